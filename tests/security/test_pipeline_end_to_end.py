"""`make apply` from nothing, at reduced size: a small digits set, 2 trials, 1 epoch.

The run is the package's `applied_pipeline` (conftest.py), the one the least-privilege tests
read. Here: the prediction through the Lambda runner equals the model's own; the jobs tell the
truth; then a second apply skips every stage and Terraform has nothing to change, and destroy
leaves no serving resource behind (those two change the deployment, so they run last).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from breedops.local.env_file import read_env_file
from breedops.terraform import driver

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]


def own_prediction(model_data_url: str, image: Path, work: Path) -> dict:
    """The model's answer for `image`, through the handler inside its own model.tar.gz."""
    bucket, key = model_data_url.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(work, filter="data")
    code = str(work / "code")
    sys.path.insert(0, code)
    try:
        spec = importlib.util.spec_from_file_location("packaged_inference", work / "code" /
                                                      "inference.py")
        handler = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = handler  # dataclasses look their module up there
        spec.loader.exec_module(handler)
        model = handler.model_fn(str(work))
        data = handler.input_fn(image.read_bytes(), "image/png")
        return json.loads(handler.output_fn(handler.predict_fn(data, model),
                                            "application/json"))
    finally:
        sys.path.remove(code)
        sys.modules.pop("packaged_inference", None)


def assert_jobs_tell_the_truth(tuning_job_name: str, served_job_name: str) -> None:
    """What a plain client sees: real trials, a best one among them, metrics from the logs;
    the served model is the best trial's, with the serving variant."""
    sagemaker, logs = boto3.client("sagemaker"), boto3.client("logs")
    tuning = sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name)
    trials = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name)["TrainingJobSummaries"]
    assert tuning["HyperParameterTuningJobStatus"] == "Completed"
    assert tuning["TrainingJobStatusCounters"]["Completed"] == len(trials) == 2
    best = tuning["BestTrainingJob"]
    assert best["TrainingJobName"] in {t["TrainingJobName"] for t in trials}
    assert served_job_name == best["TrainingJobName"]
    best_job = sagemaker.describe_training_job(TrainingJobName=best["TrainingJobName"])
    logged = {m["MetricName"]: m["Value"] for m in best_job["FinalMetricDataList"]}
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        logged["valid_loss"])
    assert best_job["TrainingJobStatus"] == "Completed" and best_job["TrainingTimeInSeconds"] > 0
    # Only the tuning job's trials ran: no training job retrains the best one.
    others = [j["TrainingJobName"] for j in sagemaker.list_training_jobs(MaxResults=100)[
        "TrainingJobSummaries"] if not j["TrainingJobName"].startswith(tuning_job_name)]
    assert others == []
    events = logs.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                    logStreamNamePrefix=f"{served_job_name}/")["events"]
    assert any("valid_loss=" in e["message"] for e in events)


def test_apply_end_to_end(pipeline_env, tmp_path):
    first = pipeline_env.summary

    assert {s["outcome"] for s in first["stages"]} == {"ran"}
    assert first["endpoint_name"] == "breedops-local-endpoint"
    artifact = json.loads((pipeline_env.root / "terraform" / "envs" / "local" /
                           "artifacts.auto.tfvars.json").read_text())["model_artifact"]
    assert artifact["training_job_name"] == first["training_job_name"]
    assert artifact["model_data_url"] == first["model_data_url"]
    own = own_prediction(first["model_data_url"], Path(first["smoke_image"]), tmp_path / "m")
    assert own["runtime"] == "onnxruntime"  # the best trial packaged the serving variant
    through_lambda = first["smoke_prediction"]
    assert through_lambda["label"] == own["predictions"][0]["label"]
    assert through_lambda["probability"] == pytest.approx(own["predictions"][0]["probability"],
                                                          abs=1e-4)
    assert first["smoke_true_label"] == Path(first["smoke_image"]).parent.name
    assert_jobs_tell_the_truth(first["tuning_job_name"], first["training_job_name"])
    assert {Path(p).name for p in first["plots"]} >= {"confusion_matrix.png"}
    saved_logs = [pipeline_env.root / p for p in first["job_logs"]]  # read as the operator
    assert [p.name for p in saved_logs] == ["algo-1.log"]
    assert "valid_loss=" in saved_logs[0].read_text()


def test_plain_aws_cli_invokes_the_function_with_only_the_env_file(pipeline_env, tmp_path):
    """`aws lambda invoke` with nothing but `.local/env`: the deployed function predicts."""
    summary = pipeline_env.summary
    image = Path(summary["smoke_image"])
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                   "AWS_CONFIG_FILE": str(tmp_path / "none"),
                   "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                   **read_env_file(pipeline_env.state / "env")}
    payload = json.dumps({"image": base64.b64encode(image.read_bytes()).decode()})
    out = tmp_path / "out.json"
    cli = subprocess.run(  # awscli v1 sends --payload as given
        [str(Path(sys.executable).with_name("aws")), "lambda", "invoke", "--function-name",
         summary["lambda_function_name"], "--qualifier", "live", "--payload", payload, str(out)],
        env=environment, capture_output=True, text=True, timeout=120, check=False)

    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["StatusCode"] == 200 and "FunctionError" not in cli.stdout
    answer = json.loads(out.read_text())
    assert answer["statusCode"] == 200
    top = json.loads(answer["body"])["predictions"][0]
    assert top["label"] == summary["smoke_prediction"]["label"]


def test_callers_beyond_the_reserved_concurrency_are_throttled_and_none_is_lost(pipeline_env):
    """20 simultaneous callers, 10 reserved: each is answered or gets 429; none hangs."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    summary = pipeline_env.summary
    function = summary["lambda_function_name"]
    client = boto3.client("lambda", config=Config(retries={"total_max_attempts": 1},
                                                  read_timeout=120))
    assert client.get_function_concurrency(FunctionName=function)[
        "ReservedConcurrentExecutions"] == 10
    event = {"image": base64.b64encode(Path(summary["smoke_image"]).read_bytes()).decode()}
    callers = 20
    barrier = threading.Barrier(callers)

    def call(_: int) -> str:
        barrier.wait()
        try:
            response = client.invoke(FunctionName=function, Qualifier="live",
                                     Payload=json.dumps(event).encode())
        except ClientError as e:
            return e.response["Error"]["Code"]
        body = json.loads(response["Payload"].read())
        return "ok" if "FunctionError" not in response and body["statusCode"] == 200 else \
            f"failed: {body}"

    with ThreadPoolExecutor(callers) as pool:
        outcomes = [f.result(timeout=180) for f in [pool.submit(call, i)
                                                    for i in range(callers)]]

    assert set(outcomes) == {"ok", "TooManyRequestsException"}, outcomes
    assert outcomes.count("ok") >= 1


@pytest.mark.changes_the_pipeline
def test_second_apply_is_a_noop_then_destroy_removes_serving(pipeline_env):
    from breedops.pipeline.apply import apply

    first = pipeline_env.summary

    second = apply(pipeline_env.options, out=io.StringIO())

    outcomes = {s["stage"]: s["outcome"] for s in second["stages"]}
    assert {k: v for k, v in outcomes.items() if k not in ("services", "smoke")} == {
        "base": "skipped", "data": "skipped", "tune": "skipped",
        "serving": "skipped"}
    assert second["training_job_name"] == first["training_job_name"]
    plan_json, _ = driver.plan("local")
    changes = json.loads(plan_json.read_text()).get("resource_changes", [])
    assert [c["address"] for c in changes if c["change"]["actions"] not in (["no-op"],
                                                                           ["read"])] == []

    driver.destroy("local")

    sagemaker = boto3.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"] == []
    bucket = first["model_data_url"].split("/")[2]
    boto3.client("s3").head_bucket(Bucket=bucket)  # kept
