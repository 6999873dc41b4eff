"""The AWS CLI against the emulator: the same variables, no endpoint flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
