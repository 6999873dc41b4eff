"""Unit tests of the Terraform driver: CLI config, env file, error lines, destroy targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from breedops.settings import lambda_zip_path
from breedops.terraform import runner
from breedops.terraform.driver import PROTECTED_MODULE, destroy_targets


def test_cli_config_file_ignores_missing_configured_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "missing.rc"))
    (tmp_path / "terraform.rc").write_text("provider_installation { direct {} }\n")
    assert runner.cli_config_file() == tmp_path / "terraform.rc"


def test_cli_config_file_is_none_without_any_config(tmp_path, monkeypatch):
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    assert runner.cli_config_file() is None


def test_terraform_env_reads_emulator_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    (tmp_path / "env").write_text("export AWS_ENDPOINT_URL=http://127.0.0.1:5566\n# note\n")
    assert runner.terraform_env("local")["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5566"


def test_terraform_env_without_emulator_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(runner.TerraformError, match="make up"):
        runner.terraform_env("local")



def test_terraform_env_gives_lambda_zip_path_relative_to_env_root(tmp_path, monkeypatch):
    """The one path of settings, relative to the root: the state holds it on every machine."""
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path / ".local"))
    variables = runner.terraform_env("aws")
    assert variables["TF_VAR_lambda_zip_path"] == "../../../build/lambda.zip"
    assert (tmp_path / "terraform" / "envs" / "aws" / variables["TF_VAR_lambda_zip_path"]
            ).resolve() == lambda_zip_path()
    assert "TF_VAR_lambda_zip_path" not in runner.terraform_env()


def test_first_error_picks_error_line():
    output = "noise\n╷\n│ Error: creating S3 Bucket: BucketNotEmpty\n│ more\n╵\n"
    assert runner.first_error(output) == "Error: creating S3 Bucket: BucketNotEmpty"
    assert runner.first_error("just a line\n") == "just a line"


def test_run_failure_names_root(tmp_path):
    (tmp_path / "main.tf").write_text('resource "x" {\n')
    with pytest.raises(runner.TerraformError, match=r"terraform validate failed in .*Error:"):
        runner.run(Path(tmp_path), "validate", "-no-color", capture=True)


def test_destroy_targets_keep_protected_bucket_module():
    addresses = [
        f"{PROTECTED_MODULE}.aws_s3_bucket.this",
        f"{PROTECTED_MODULE}.data.aws_iam_policy_document.bucket",
        "module.platform.module.iam.aws_iam_role.lambda",
        "module.platform.module.iam.data.aws_iam_policy_document.lambda",
        'module.platform.module.endpoint[0].aws_sagemaker_endpoint.this',
        "module.platform.data.aws_region.current",
        "aws_s3_object.marker",
    ]
    assert destroy_targets(addresses) == [
        "aws_s3_object.marker",
        "module.platform.module.endpoint[0]",
        "module.platform.module.iam",
    ]


def test_destroy_targets_empty_when_only_bucket_left():
    assert destroy_targets([f"{PROTECTED_MODULE}.aws_kms_key.this"]) == []
