"""The SageMaker SDK v3 backend: what reaches the SageMaker API, asserted on `describe`.

These tests check request shapes only, on an in-process moto server that registers jobs
without running them (`test_sdk_jobs.py` runs them in the emulator).
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from iam_roles import create_execution_role

from breedops.jobs.metrics import METRIC_DEFINITIONS
from breedops.jobs.spec import TrainingRequest, TuningRequest

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def sdk_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    home = tmp_path_factory.mktemp("sdk-home")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        }.items():
            mp.setenv(name, value)
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="module")
def backend(sdk_emulator: str):
    from breedops.jobs.sagemaker_backend import SageMakerBackend

    boto3.client("s3").create_bucket(Bucket="sdk-data")
    return SageMakerBackend()


@pytest.fixture(scope="module")
def role_arn(sdk_emulator: str) -> str:
    return create_execution_role(boto3.client("iam"), "sdk-execution", "sdk-data")


def _request(role_arn: str, **overrides) -> TrainingRequest:
    return TrainingRequest(bucket="sdk-data", dataset="digits", role_arn=role_arn, **overrides)


def _train_script(channels: dict) -> str:
    """The container command the SDK staged in its `sm_drivers` channel."""
    s3 = boto3.client("s3")
    prefix = channels["sm_drivers"]["S3Uri"].removeprefix("s3://sdk-data/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sdk-data", Prefix=prefix)["Contents"]]
    key = next(k for k in keys if k.endswith("sm_train.sh"))
    return s3.get_object(Bucket="sdk-data", Key=key)["Body"].read().decode()


def test_submit_training_sends_spot_checkpoints_and_sharded_ddp(backend, role_arn: str) -> None:
    name = backend.submit_training(_request(role_arn, instance_count=2))
    described = backend.sagemaker.describe_training_job(TrainingJobName=name)

    assert described["EnableManagedSpotTraining"] is True
    stopping = described["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] > stopping["MaxRuntimeInSeconds"]
    assert described["CheckpointConfig"]["S3Uri"].startswith("s3://sdk-data/checkpoints/")
    assert described["CheckpointConfig"]["S3Uri"].rstrip("/").split("/")[-1] in name
    assert described["ResourceConfig"]["InstanceCount"] == 2
    assert described["OutputDataConfig"]["S3OutputPath"] == "s3://sdk-data/jobs"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]
                for c in described["InputDataConfig"]}
    assert channels["train"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert channels["train"]["S3Uri"] == "s3://sdk-data/data/digits/train/"
    assert channels["valid"]["S3DataDistributionType"] == "FullyReplicated"
    assert described["HyperParameters"]["lr"] == "0.003"
    # The distribution setting travels in the SDK's driver channel: torchrun across hosts.
    assert "torchrun_driver.py" in _train_script(channels)
    s3 = boto3.client("s3")
    code = channels["code"]["S3Uri"].removeprefix("s3://sdk-data/")
    code_keys = {o["Key"].removeprefix(code).lstrip("/") for o in
                 s3.list_objects_v2(Bucket="sdk-data", Prefix=code)["Contents"]}
    assert {"train_entry.py", "breedops/training/train.py", "breedops/serving/inference.py",
            "breedops/modeling/transforms.py"} <= code_keys


def test_submit_training_on_one_instance_replicates_every_channel(backend,
                                                                  role_arn: str) -> None:
    name = backend.submit_training(_request(role_arn, use_spot=False))
    described = backend.sagemaker.describe_training_job(TrainingJobName=name)
    assert described["EnableManagedSpotTraining"] is False
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]
                for c in described["InputDataConfig"]}
    assert {c["S3DataDistributionType"] for c in channels.values()} == {"FullyReplicated"}
    assert "torchrun_driver.py" not in _train_script(channels)


def test_submit_tuning_sends_objective_regexes_and_ranges(backend, role_arn: str) -> None:
    name = backend.submit_tuning(TuningRequest(training=_request(role_arn), max_jobs=4,
                                               max_parallel_jobs=2))
    assert len(name) <= 32
    described = backend.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name)
    config = described["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize",
                                                          "MetricName": "valid_loss"}
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 4
    assert config["ResourceLimits"]["MaxParallelTrainingJobs"] == 2
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.0015", "MaxValue": "0.005", "ScalingType": "Logarithmic"}]
    assert {r["Name"]: (r["MinValue"], r["MaxValue"]) for r in
            ranges["IntegerParameterRanges"]} == {"batch-size": ("48", "96"),
                                                  "epochs": ("5", "7")}
    definition = described["TrainingJobDefinition"]
    # Every trial packages the serving variant (the best one is served); tuned values are not
    # static.
    static = definition["StaticHyperParameters"]
    assert "onnx" not in static and static["arch"] == "resnet18"
    assert not {"lr", "batch-size", "epochs"} & set(static)
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert definition["EnableManagedSpotTraining"] is True
    stopping = definition["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] > stopping["MaxRuntimeInSeconds"]
    # One prefix for the tuning job: each trial checkpoints into its own folder under it.
    assert definition["CheckpointConfig"]["S3Uri"] == f"s3://sdk-data/checkpoints/{name}/"
