"""Terraform's AWS provider applies and destroys a SageMaker scalable target on the emulator.

Without application-autoscaling `ListTagsForResource` the provider retries forever, so this is
the end-to-end check of that extension.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from breedops.settings import project_root

pytestmark = [pytest.mark.emulator, pytest.mark.terraform]

CONFIG = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.0" }
  }
}

provider "aws" {
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "sagemaker"
  resource_id        = "endpoint/tf-test/variant/AllTraffic"
  scalable_dimension = "sagemaker:variant:DesiredInstanceCount"
  min_capacity       = 1
  max_capacity       = 2
  tags               = { project = "breedops" }
}

output "arn" {
  value = aws_appautoscaling_target.this.arn
}
"""


def terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_INPUT="0")
    cli_config = project_root() / ".local" / "terraform.rc"
    if cli_config.exists():  # the Makefile's offline provider mirror, when there is one
        env["TF_CLI_CONFIG_FILE"] = str(cli_config)
    result = subprocess.run(
        ["terraform", f"-chdir={workdir}", *args], check=False, capture_output=True, text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, f"terraform {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_terraform_applies_and_destroys_appautoscaling_target(aws_emulator, tmp_path):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on the PATH")
    import boto3

    (tmp_path / "main.tf").write_text(CONFIG)
    terraform(tmp_path, "init", "-no-color")
    terraform(tmp_path, "apply", "-auto-approve", "-no-color")
    arn = terraform(tmp_path, "output", "-raw", "arn").stdout.strip()
    client = boto3.client("application-autoscaling")
    assert client.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"project": "breedops"}

    terraform(tmp_path, "destroy", "-auto-approve", "-no-color")

    remaining = client.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=["endpoint/tf-test/variant/AllTraffic"]
    )["ScalableTargets"]
    assert remaining == []
