"""The AWS CLI against the emulator: the same variables, no endpoint flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from iam_roles import SAGEMAKER_TRUST, job_policy

pytestmark = pytest.mark.emulator


def aws_cli() -> str:
    """The `aws` next to the running interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "aws"
    found = str(beside) if beside.exists() else shutil.which("aws")
    if not found:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    return found


def aws(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [aws_cli(), *args, "--output", "json"], check=False, capture_output=True, text=True,
        env=dict(os.environ), timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed: {result.stderr}")
    return result


def test_cli_create_bucket_and_put_object(aws_emulator, unique_name, tmp_path):
    body = tmp_path / "labels.json"
    body.write_text('["0", "1"]')

    aws("s3api", "create-bucket", "--bucket", unique_name)
    aws("s3api", "put-object", "--bucket", unique_name, "--key", "data/x.json", "--body", str(body))
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", unique_name).stdout)

    assert [o["Key"] for o in listed["Contents"]] == ["data/x.json"]


def test_cli_register_scalable_target_and_list_tags(aws_emulator, unique_name):
    registered = json.loads(aws(
        "application-autoscaling", "register-scalable-target", "--service-namespace", "sagemaker",
        "--resource-id", f"endpoint/{unique_name}/variant/AllTraffic",
        "--scalable-dimension", "sagemaker:variant:DesiredInstanceCount",
        "--min-capacity", "1", "--max-capacity", "3", "--tags", "team=ml",
    ).stdout)
    arn = registered["ScalableTargetARN"]

    tags = json.loads(aws(
        "application-autoscaling", "list-tags-for-resource", "--resource-arn", arn
    ).stdout)
    missing = aws(
        "application-autoscaling", "list-tags-for-resource", "--resource-arn", arn[:-4] + "zzzz",
        check=False,
    )

    assert tags == {"Tags": {"team": "ml"}}
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_cli_provisioned_concurrency_put_get_delete(function_with_alias):
    name = function_with_alias
    put = json.loads(aws(
        "lambda", "put-provisioned-concurrency-config", "--function-name", name,
        "--qualifier", "live", "--provisioned-concurrent-executions", "2",
    ).stdout)
    got = json.loads(aws(
        "lambda", "get-provisioned-concurrency-config", "--function-name", name,
        "--qualifier", "live",
    ).stdout)
    aws("lambda", "delete-provisioned-concurrency-config", "--function-name", name,
        "--qualifier", "live")
    after = aws("lambda", "get-provisioned-concurrency-config", "--function-name", name,
                "--qualifier", "live", check=False)

    assert put["Status"] == got["Status"] == "READY"
    assert got["AllocatedProvisionedConcurrentExecutions"] == 2
    assert after.returncode != 0
    assert "ProvisionedConcurrencyConfigNotFoundException" in after.stderr


TRAIN_SCRIPT = """import sys
for epoch in range(2):
    print(f"epoch={epoch}; valid_loss={1 / (epoch + 2):.4f};", flush=True)
if "--fail" in sys.argv:
    raise ValueError("the cli test asked this job to fail")
"""


def _cli_training_job(name: str, bucket: str, role: str, fail: bool) -> dict:
    hyperparameters = {"sagemaker_program": "train.py",
                       "sagemaker_submit_directory": f"s3://{bucket}/code/sourcedir.tar.gz"}
    if fail:
        hyperparameters["fail"] = "yes"
    return {
        "TrainingJobName": name, "RoleArn": role, "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                             "pytorch-training:2.5-cpu-py311",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "valid_loss", "Regex": "valid_loss=([0-9.]+);"}]},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/jobs"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                           "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


def _describe_until_done(name: str, timeout_s: float = 120) -> dict:
    """`describe-training-job` until the job ends (the CLI's own waiter polls every 120 s)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        described = json.loads(aws("sagemaker", "describe-training-job", "--training-job-name",
                                   name).stdout)
        if described["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        assert time.monotonic() < deadline, f"{name} still {described['TrainingJobStatus']}"
        time.sleep(1)


def test_cli_create_training_job_runs_it_and_a_broken_one_fails(aws_emulator, unique_name,
                                                               tmp_path):
    import tarfile

    source = tmp_path / "train.py"
    source.write_text(TRAIN_SCRIPT)
    with tarfile.open(tmp_path / "sourcedir.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="train.py")
    (tmp_path / "row.csv").write_text("1,2\n")
    role = json.loads(aws("iam", "create-role", "--role-name", unique_name,
                          "--assume-role-policy-document", json.dumps(SAGEMAKER_TRUST)
                          ).stdout)["Role"]["Arn"]
    aws("iam", "put-role-policy", "--role-name", unique_name, "--policy-name", "job-contract",
        "--policy-document", json.dumps(job_policy(unique_name)))
    aws("s3", "mb", f"s3://{unique_name}")
    aws("s3", "cp", str(tmp_path / "sourcedir.tar.gz"), f"s3://{unique_name}/code/")
    aws("s3", "cp", str(tmp_path / "row.csv"), f"s3://{unique_name}/data/")

    outcomes = {}
    for suffix, fail in (("ok", False), ("broken", True)):
        name = f"{unique_name}-{suffix}"
        request = tmp_path / f"{name}.json"
        request.write_text(json.dumps(_cli_training_job(name, unique_name, role, fail)))
        aws("sagemaker", "create-training-job", "--cli-input-json", f"file://{request}")
        outcomes[suffix] = _describe_until_done(name)

    assert outcomes["ok"]["TrainingJobStatus"] == "Completed"
    assert outcomes["ok"]["FinalMetricDataList"][0]["Value"] == pytest.approx(1 / 3, abs=1e-4)
    events = json.loads(aws("logs", "filter-log-events", "--log-group-name",
                            "/aws/sagemaker/TrainingJobs", "--log-stream-name-prefix",
                            f"{unique_name}-ok/").stdout)["events"]
    assert "epoch=1; valid_loss=0.3333;" in [e["message"] for e in events]
    assert outcomes["broken"]["TrainingJobStatus"] == "Failed"
    assert "ValueError: the cli test asked this job to fail" in outcomes["broken"]["FailureReason"]
