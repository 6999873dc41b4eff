"""The local backend against the emulator: requests, job layout, outputs, artifacts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest
import torch

from breedops.jobs import workflow
from breedops.jobs.local_backend import (
    STATUS_TAG,
    JobFailedError,
    LocalBackend,
    MissingChannelError,
)
from breedops.jobs.metrics import METRIC_DEFINITIONS
from breedops.jobs.spec import HyperParameters, ParameterRanges, TrainingRequest, TuningRequest
from breedops.settings import artifacts_file

pytestmark = pytest.mark.emulator
ROLE = "arn:aws:iam::123456789012:role/breedops-local-sagemaker"
TINY = HyperParameters(epochs=1, image_size=16, batch_size=64)


def _tags(sagemaker, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}


@pytest.mark.slow
def test_local_train_registers_runs_and_packages_the_job(
    digits_bucket: str, artifacts_root: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(jobs_dir=tmp_path / "jobs")
    request = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=ROLE,
                              hyperparameters=TINY, instance_type="ml.m5.large")
    result = workflow.train("local", backend, request)

    described = backend.sagemaker.describe_training_job(TrainingJobName=result.job_name)
    assert described["TrainingJobArn"] == result.job_arn
    assert described["EnableManagedSpotTraining"] is True
    stopping = described["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] > stopping["MaxRuntimeInSeconds"]
    assert described["CheckpointConfig"]["S3Uri"] == (
        f"s3://{digits_bucket}/checkpoints/{result.job_name}/")
    assert described["HyperParameters"] == TINY.as_strings()
    assert {c["DataSource"]["S3DataSource"]["S3DataDistributionType"]
            for c in described["InputDataConfig"]} == {"FullyReplicated"}
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == result.model_data_url
    assert _tags(backend.sagemaker, result.job_arn)[STATUS_TAG] == "Completed"

    body = boto3.client("s3").get_object(
        Bucket=digits_bucket, Key=f"jobs/{result.job_name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
        saved = torch.load(io.BytesIO(tar.extractfile("model.pth").read()), weights_only=True)
    assert {"model.pth", "labels.json", "code/inference.py", "code/breedops/__init__.py",
            "code/breedops/modeling/architectures.py",
            "code/breedops/modeling/transforms.py"} <= names
    assert saved["model_version"] == result.job_name and saved["num_classes"] == 10
    assert set(result.metrics) == {d["Name"] for d in METRIC_DEFINITIONS}

    artifact = json.loads(artifacts_file("local").read_text())["model_artifact"]
    assert artifact["model_data_url"] == result.model_data_url
    assert artifact["training_job_arn"] == result.job_arn
    assert artifact["test_metrics"]["test_accuracy"] == result.metrics["test_accuracy"]


@pytest.mark.slow
def test_local_train_with_two_instances_shards_the_training_channel(
    digits_bucket: str, artifacts_root: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(jobs_dir=tmp_path / "jobs")
    request = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=ROLE,
                              hyperparameters=TINY, instance_count=2)
    result = backend.train(request)
    described = backend.sagemaker.describe_training_job(TrainingJobName=result.job_name)
    distribution = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"]
                    for c in described["InputDataConfig"]}
    assert distribution == {"train": "ShardedByS3Key", "valid": "FullyReplicated",
                            "test": "FullyReplicated"}
    assert described["ResourceConfig"]["InstanceCount"] == 2
    hosts = [tmp_path / "jobs" / result.job_name / f"algo-{i}" for i in (1, 2)]
    shards = [{p.name for p in (h / "input" / "data" / "train").rglob("*.png")} for h in hosts]
    uploaded = boto3.client("s3").list_objects_v2(Bucket=digits_bucket,
                                                  Prefix="data/digits/train/")["KeyCount"]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == uploaded
    log = (hosts[0] / "logs" / "train.log").read_text()
    assert "rank 0 of 2" in log and "this host's shard" in log


@pytest.mark.slow
def test_local_tune_searches_ranges_in_parallel_and_records_the_best(
    digits_bucket: str, artifacts_root: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(jobs_dir=tmp_path / "jobs")
    training = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=ROLE,
                               hyperparameters=TINY)
    request = TuningRequest(training=training, max_jobs=2, max_parallel_jobs=2,
                            ranges=ParameterRanges(lr=(1e-3, 1e-2), epochs=(1, 1)))
    result = workflow.tune("local", backend, request)

    described = backend.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=result.tuning_job_name)
    config = described["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize",
                                                          "MetricName": "valid_loss"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 2,
                                        "MaxParallelTrainingJobs": 2}
    assert config["ParameterRanges"]["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]
    assert (described["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
            == METRIC_DEFINITIONS)
    trials = [j for j in backend.sagemaker.list_training_jobs()["TrainingJobSummaries"]
              if j["TrainingJobName"].startswith(result.tuning_job_name)]
    assert len(trials) == 2
    assert 1e-3 <= result.best.hyperparameters.lr <= 1e-2
    assert workflow.best_hyperparameters_of(backend, result.tuning_job_name) == (
        result.best.hyperparameters)
    artifact = json.loads(artifacts_file("local").read_text())["model_artifact"]
    assert artifact["tuning_job_name"] == result.tuning_job_name
    assert artifact["best_hyperparameters"] == result.best.hyperparameters.as_strings()


def test_local_train_with_a_missing_channel_registers_and_writes_nothing(
    digits_bucket: str, artifacts_root: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(jobs_dir=tmp_path / "jobs")
    before = backend.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    request = TrainingRequest(bucket=digits_bucket, dataset="no-such-dataset", role_arn=ROLE,
                              hyperparameters=TINY)
    with pytest.raises(MissingChannelError, match="channel 'train' is empty.*data upload"):
        workflow.train("local", backend, request)
    assert backend.sagemaker.list_training_jobs()["TrainingJobSummaries"] == before
    assert not artifacts_file("local").exists()


def test_local_train_failure_is_tagged_and_uploads_nothing(
    digits_bucket: str, artifacts_root: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(jobs_dir=tmp_path / "jobs")
    # A batch larger than the data: the entry point refuses it after the job is registered.
    request = TrainingRequest(bucket=digits_bucket, dataset="digits", role_arn=ROLE,
                              hyperparameters=HyperParameters(epochs=1, batch_size=5000))
    expected = "(?s)failed \\(exit 2\\).*batch size 5000 exceeds"
    with pytest.raises(JobFailedError, match=expected) as failure:
        workflow.train("local", backend, request)
    name = failure.value.job_name
    arn = backend.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobArn"]
    assert _tags(backend.sagemaker, arn)[STATUS_TAG] == "Failed"
    listed = boto3.client("s3").list_objects_v2(Bucket=digits_bucket, Prefix=f"jobs/{name}/")
    assert "Contents" not in listed
    assert not artifacts_file("local").exists()
