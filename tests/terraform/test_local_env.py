"""The local environment against the emulator: base, serving with a sample artifact, destroy.

One test walks the whole lifecycle because each init and apply costs tens of seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from sandbox import make_sandbox

from breedops.terraform import driver
from breedops.terraform.runner import TerraformError, run

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

EXPECTED_OUTPUTS = {
    "bucket_name", "kms_key_arn", "sagemaker_execution_role_arn", "operator_policy_arn",
    "endpoint_name", "lambda_function_name", "lambda_alias_name", "name_prefix",
}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A copy of terraform/ with a stand-in Lambda zip, so the real env dir stays untouched."""
    make_sandbox(tmp_path)
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path / ".local"))
    return tmp_path


def test_local_env_applies_serves_and_destroys(aws_emulator, sandbox):
    base = driver.apply("local")
    assert EXPECTED_OUTPUTS <= base.keys()
    assert base["endpoint_name"] is None and base["lambda_alias_name"] is None
    bucket = base["bucket_name"]

    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="jobs/train-001/output/model.tar.gz", Body=b"model")
    artifact = {"model_artifact": {
        "model_data_url": f"s3://{bucket}/jobs/train-001/output/model.tar.gz",
        "training_job_name": "train-001",
        "training_job_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-001",
    }}
    env_root = sandbox / "terraform" / "envs" / "local"
    (env_root / "artifacts.auto.tfvars.json").write_text(json.dumps(artifact))

    served = driver.apply("local")
    assert served["endpoint_name"] == "breedops-local-endpoint"
    assert served["lambda_alias_name"] == "live"
    sagemaker = boto3.client("sagemaker")
    assert sagemaker.describe_endpoint(EndpointName="breedops-local-endpoint")["EndpointName"]
    alias = boto3.client("lambda").get_alias(FunctionName="breedops-local-inference", Name="live")
    assert alias["FunctionVersion"] != "$LATEST"

    plan_json, plan_md = driver.plan("local")
    assert json.loads(plan_json.read_text())["format_version"]
    assert "Total:" in plan_md.read_text()

    driver.destroy("local")
    assert s3.head_bucket(Bucket=bucket)
    left = run(env_root, "state", "list", env="local", capture=True).stdout.split()
    assert driver.destroy_targets(left) == []
    assert f"{driver.PROTECTED_MODULE}.aws_s3_bucket.this" in left

    # The protected bucket: a plain destroy fails on the objects it holds.
    with pytest.raises(TerraformError, match="BucketNotEmpty|not empty"):
        run(env_root, "destroy", "-auto-approve", "-input=false", "-no-color", env="local",
            capture=True)

    driver.destroy("local", force=True)
    assert run(env_root, "state", "list", env="local", capture=True).stdout.split() == []
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_plan_without_lambda_zip_names_make_lambda(aws_emulator, sandbox):
    (sandbox / "build" / "lambda.zip").unlink()
    env_root: Path = sandbox / "terraform" / "envs" / "local"
    (env_root / "artifacts.auto.tfvars.json").write_text("{}")
    with pytest.raises(TerraformError, match="make lambda"):
        driver.plan("local")
