"""The SDK v3 backend end to end: its requests run in the emulator, results come back as on AWS.

The same code path as `--env aws`: `ModelTrainer` and `HyperparameterTuner` submit, the
emulator executes (SageMaker's container contract, the job's role, CloudWatch Logs), and the
backend reads the outcome from the describe calls and S3.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
import torch

from breedops.hyperparameters import DIGITS, fixed, preset
from breedops.jobs import workflow
from breedops.jobs.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from breedops.jobs.sagemaker_backend import SageMakerBackend, SageMakerJobError
from breedops.jobs.spec import HyperParameters, TrainingRequest, TuningRequest
from breedops.settings import artifacts_file

pytestmark = [pytest.mark.emulator, pytest.mark.slow]
TINY = HyperParameters(epochs=1, image_size=16, batch_size=64)
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _log_lines(job_name: str) -> dict[str, list[str]]:
    """Every CloudWatch log line of a job, by host (`algo-N`)."""
    logs = boto3.client("logs")
    lines: dict[str, list[str]] = {}
    for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"):
        for event in page["events"]:
            host = event["logStreamName"].split("/", 1)[1].rsplit("-", 1)[0]
            lines.setdefault(host, []).append(event["message"])
    return lines


def _model_tar(bucket: str, job_name: str) -> tarfile.TarFile:
    body = boto3.client("s3").get_object(
        Bucket=bucket, Key=f"jobs/{job_name}/output/model.tar.gz")["Body"].read()
    return tarfile.open(fileobj=io.BytesIO(body))


def test_train_runs_in_the_emulator_and_records_the_artifact(
        digits_bucket: str, execution_role: str, artifacts_root: Path) -> None:
    backend = SageMakerBackend()
    request = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=execution_role,
                              hyperparameters=TINY, instance_type="ml.m5.large")
    result = workflow.train("local", backend, request)

    described = backend.sagemaker.describe_training_job(TrainingJobName=result.job_name)
    assert described["TrainingJobStatus"] == "Completed"
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert described["TrainingTimeInSeconds"] >= 1
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert set(final) == {d["Name"] for d in METRIC_DEFINITIONS}
    assert result.metrics == pytest.approx(final)
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == result.model_data_url

    with _model_tar(digits_bucket, result.job_name) as tar:
        names = set(tar.getnames())
        saved = torch.load(io.BytesIO(tar.extractfile("model.pth").read()), weights_only=True)
    assert {"model.pth", "labels.json", "model.onnx", "code/inference.py",
            "code/breedops/modeling/transforms.py", "code/requirements.txt"} <= names
    assert saved["model_version"] == result.job_name and saved["num_classes"] == 10

    logged = "\n".join(_log_lines(result.job_name)["algo-1"])
    assert f"valid_loss={final['valid_loss']:.4f};" in logged
    artifact = json.loads(artifacts_file("local").read_text())["model_artifact"]
    assert artifact["model_data_url"] == result.model_data_url
    assert artifact["training_job_arn"] == result.job_arn


def test_train_on_two_instances_shards_the_channel_and_the_model_serves(
        digits_bucket: str, execution_role: str, tmp_path: Path) -> None:
    from breedops.serving import inference

    backend = SageMakerBackend()
    request = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=execution_role,
                              hyperparameters=TINY, instance_count=2)
    result = backend.train(request)

    lines = _log_lines(result.job_name)
    assert set(lines) == {"algo-1", "algo-2"}
    # Each host trains on its own shard: about half of the 240 training images each.
    shards = {}
    for host, host_lines in lines.items():
        found = [re.search(r"train (\d+) \(this host's shard\)", line) for line in host_lines]
        shards[host] = next(int(m.group(1)) for m in found if m)
    assert sum(shards.values()) == 240 and all(110 <= n <= 130 for n in shards.values())
    assert any("process group: rank 1 of 2" in line for line in lines["algo-2"])

    with _model_tar(digits_bucket, result.job_name) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    model = inference.model_fn(str(tmp_path / "model"))
    s3 = boto3.client("s3")
    key = s3.list_objects_v2(Bucket=digits_bucket, Prefix="data/digits/test/")["Contents"][0]["Key"]
    image = s3.get_object(Bucket=digits_bucket, Key=key)["Body"].read()
    prediction = inference.predict_fn(inference.input_fn(image, "image/png"), model)
    answer = json.loads(inference.output_fn(prediction, "application/json"))
    assert answer["model_version"] == result.job_name
    assert len(answer["predictions"]) == 5


def test_train_on_an_empty_channel_fails_with_sagemakers_reason(
        digits_bucket: str, execution_role: str) -> None:
    backend = SageMakerBackend()
    request = TrainingRequest(bucket=digits_bucket, dataset="no-such-dataset",
                              role_arn=execution_role, hyperparameters=TINY)
    with pytest.raises(SageMakerJobError, match=r"ended Failed: ClientError: No S3 objects"):
        backend.train(request)


def test_tune_runs_trials_that_keep_their_own_checkpoints(
        digits_bucket: str, execution_role: str) -> None:
    backend = SageMakerBackend()
    # Every epoch checkpointed (a trial of seconds writes none by default).
    training = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=execution_role,
                               hyperparameters=replace(TINY, checkpoint_interval=0))
    result = backend.tune(TuningRequest(training=training, max_jobs=2, max_parallel_jobs=2,
                                        ranges=fixed(preset(DIGITS).search_ranges(), epochs=1)))

    trials = backend.sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=result.tuning_job_name)["TrainingJobSummaries"]
    names = {t["TrainingJobName"] for t in trials}
    assert len(names) == 2 and all(t["TrainingJobStatus"] == "Completed" for t in trials)
    assert result.best.job_name in names
    described = backend.sagemaker.describe_training_job(TrainingJobName=result.best.job_name)
    objective = next(m["Value"] for m in described["FinalMetricDataList"]
                     if m["MetricName"] == OBJECTIVE_METRIC)
    assert result.objective_value == pytest.approx(objective)

    # One checkpoint prefix for the tuning job; each trial keeps its own folder in it.
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(
        Bucket=digits_bucket, Prefix=f"checkpoints/{result.tuning_job_name}/")["Contents"]]
    assert {f"checkpoints/{result.tuning_job_name}/{name}/checkpoint.pt" for name in names} \
        <= set(keys)
    for name in names:
        assert not any("resuming" in line for lines in _log_lines(name).values()
                       for line in lines)
        # Every trial's model can be served (the best one is): the gated ONNX variant and
        # the runtime's wheels for the endpoint are in each model.tar.gz.
        with _model_tar(digits_bucket, name) as tar:
            packaged = set(tar.getnames())
        assert {"model.pth", "labels.json", "code/inference.py", "model.onnx",
                "code/requirements.txt"} <= packaged
        assert any(n.startswith("code/lib/onnxruntime-") for n in packaged)


def test_train_with_a_role_sagemaker_cannot_assume_is_refused(digits_bucket: str) -> None:
    iam = boto3.client("iam")
    untrusted = iam.create_role(RoleName="not-for-sagemaker", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    backend = SageMakerBackend()
    before = backend.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    request = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=untrusted,
                              hyperparameters=TINY)
    with pytest.raises(Exception, match="Could not assume role .*not-for-sagemaker"):
        backend.submit_training(request)
    assert backend.sagemaker.list_training_jobs()["TrainingJobSummaries"] == before
