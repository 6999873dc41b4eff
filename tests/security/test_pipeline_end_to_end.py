"""`make apply` from nothing, at reduced size: a small digits set, 2 trials, 1 epoch.

The run is the package's `applied_pipeline` (conftest.py), the one the least-privilege tests
read. Here: the prediction through the Lambda runner equals the model's own; the jobs tell the
truth; then a second apply skips every stage and Terraform has nothing to change, and destroy
leaves no serving resource behind (those two change the deployment, so they run last).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path

import boto3
import pytest

from breedops import terraform

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


def assert_jobs_tell_the_truth(tuning_job_name: str, training_job_name: str) -> None:
    """What a plain client sees: real trials, a best one among them, metrics from the logs."""
    sagemaker, logs = boto3.client("sagemaker"), boto3.client("logs")
    tuning = sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name)
    trials = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name)["TrainingJobSummaries"]
    assert tuning["HyperParameterTuningJobStatus"] == "Completed"
    assert tuning["TrainingJobStatusCounters"]["Completed"] == len(trials) == 2
    best = tuning["BestTrainingJob"]
    assert best["TrainingJobName"] in {t["TrainingJobName"] for t in trials}
    best_job = sagemaker.describe_training_job(TrainingJobName=best["TrainingJobName"])
    logged = {m["MetricName"]: m["Value"] for m in best_job["FinalMetricDataList"]}
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        logged["valid_loss"])
    final = sagemaker.describe_training_job(TrainingJobName=training_job_name)
    assert final["TrainingJobStatus"] == "Completed" and final["TrainingTimeInSeconds"] > 0
    events = logs.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                    logStreamNamePrefix=f"{training_job_name}/")["events"]
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
    through_lambda = first["smoke_prediction"]
    assert through_lambda["label"] == own["predictions"][0]["label"]
    assert through_lambda["probability"] == pytest.approx(own["predictions"][0]["probability"],
                                                          abs=1e-4)
    assert first["smoke_true_label"] == Path(first["smoke_image"]).parent.name
    assert_jobs_tell_the_truth(first["tuning_job_name"], first["training_job_name"])
    assert {Path(p).name for p in first["plots"]} >= {"confusion_matrix.png"}


@pytest.mark.changes_the_pipeline
def test_second_apply_is_a_noop_then_destroy_removes_serving(pipeline_env):
    from breedops.pipeline.apply import apply

    first = pipeline_env.summary

    second = apply(pipeline_env.options, out=io.StringIO())

    outcomes = {s["stage"]: s["outcome"] for s in second["stages"]}
    assert {k: v for k, v in outcomes.items() if k not in ("services", "smoke")} == {
        "base": "skipped", "data": "skipped", "tune": "skipped", "train": "skipped",
        "serving": "skipped"}
    assert second["training_job_name"] == first["training_job_name"]
    plan_json, _ = terraform.plan("local")
    changes = json.loads(plan_json.read_text()).get("resource_changes", [])
    assert [c["address"] for c in changes if c["change"]["actions"] not in (["no-op"],
                                                                           ["read"])] == []

    terraform.destroy("local")

    sagemaker = boto3.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"] == []
    bucket = first["model_data_url"].split("/")[2]
    boto3.client("s3").head_bucket(Bucket=bucket)  # kept
