"""`output_or_flag`: the flag wins, else the env's Terraform output, else an error naming both."""

from __future__ import annotations

import pytest

from breedops.errors import ConfigurationError
from breedops.terraform import driver
from breedops.terraform.outputs import output_or_flag
from breedops.terraform.runner import TerraformError


def _outputs_are(monkeypatch, outputs):
    read = []

    def fake(env):
        read.append(env)
        if isinstance(outputs, Exception):
            raise outputs
        return outputs

    monkeypatch.setattr(driver, "outputs", fake)
    return read


def test_output_or_flag_given_flag_wins_without_reading_terraform(monkeypatch):
    read = _outputs_are(monkeypatch, TerraformError("must not be read"))
    assert output_or_flag("my-bucket", "local", "bucket_name", "--bucket") == "my-bucket"
    assert read == []


def test_output_or_flag_without_flag_reads_env_output(monkeypatch):
    read = _outputs_are(monkeypatch, {"bucket_name": "tf-bucket", "endpoint_name": None})
    assert output_or_flag(None, "aws", "bucket_name", "--bucket") == "tf-bucket"
    assert read == ["aws"]


def test_output_or_flag_empty_output_names_flag_and_output(monkeypatch):
    _outputs_are(monkeypatch, {"lambda_function_name": None})
    with pytest.raises(ConfigurationError,
                       match=r"give --function, or apply env 'local'.*'lambda_function_name'"):
        output_or_flag(None, "local", "lambda_function_name", "--function")


def test_output_or_flag_unreadable_outputs_names_flag_and_cause(monkeypatch):
    _outputs_are(monkeypatch, TerraformError("backend.hcl is missing"))
    with pytest.raises(ConfigurationError,
                       match=r"give --role-arn, or apply env 'aws'.*backend.hcl is missing"):
        output_or_flag(None, "aws", "sagemaker_execution_role_arn", "--role-arn")
