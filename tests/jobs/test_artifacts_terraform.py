"""The artifacts file against the environment root's own `model_artifact` variable.

`terraform validate` checks configuration, not variable values, so the test builds a
provider-free root from the env's `variable "model_artifact"` block, validates it, and applies
it with the artifacts file auto-loaded: Terraform itself converts the JSON to the declared type.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from breedops.jobs.artifacts import write_artifact
from breedops.settings import artifacts_file

pytestmark = pytest.mark.terraform
ENV_VARIABLES = Path(__file__).resolve().parents[2] / "terraform" / "envs" / "local" / "variables.tf"


def _variable_block(text: str, name: str) -> str:
    """The `variable "<name>" { ... }` block, by brace matching."""
    start = text.index(f'variable "{name}"')
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
        i += 1


def _terraform(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["terraform", *args], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("terraform") is None or not ENV_VARIABLES.is_file():
        pytest.skip("needs terraform and terraform/envs/local/variables.tf")
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))
    root = artifacts_file("local").parent
    root.mkdir(parents=True)
    block = _variable_block(ENV_VARIABLES.read_text(), "model_artifact")
    (root / "main.tf").write_text(block + '\n\noutput "model_artifact" {\n'
                                  "  value = var.model_artifact\n}\n")
    return root


@mock_aws
def _write(**fields) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bucket")
    s3.put_object(Bucket="bucket", Key="jobs/j1/output/model.tar.gz", Body=b"model")
    write_artifact("local", s3, **fields)


def test_artifacts_file_validates_against_the_env_variable(aws_credentials: None,
                                                           env_root: Path) -> None:
    _write(model_data_url="s3://bucket/jobs/j1/output/model.tar.gz", training_job_name="j1",
           training_job_arn="arn:aws:sagemaker:us-east-1:123456789012:training-job/j1",
           tuning_job_name="t1", best_hyperparameters={"lr": 0.003, "epochs": 6},
           test_metrics={"test_accuracy": 0.98, "test_loss": 0.07})
    for args in (("init", "-input=false", "-no-color"), ("validate", "-no-color"),
                 ("apply", "-auto-approve", "-input=false", "-no-color")):
        result = _terraform(env_root, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    value = json.loads(_terraform(env_root, "output", "-json", "model_artifact").stdout)
    assert value["best_hyperparameters"] == {"lr": "0.003", "epochs": "6"}
    assert value["test_metrics"]["test_accuracy"] == 0.98


def test_artifacts_file_with_a_wrong_type_is_rejected_by_terraform(aws_credentials: None,
                                                                   env_root: Path) -> None:
    artifacts_file("local").write_text(json.dumps({"model_artifact": {
        "model_data_url": "s3://bucket/m.tar.gz", "training_job_name": "j",
        "training_job_arn": "a", "test_metrics": {"test_accuracy": "high"}}}))
    assert _terraform(env_root, "init", "-input=false", "-no-color").returncode == 0
    result = _terraform(env_root, "apply", "-auto-approve", "-input=false", "-no-color")
    assert result.returncode != 0
    assert "model_artifact" in result.stderr
