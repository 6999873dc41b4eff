"""Metric regexes, job names, request validation and the artifacts file (no emulator)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from breedops.errors import ConfigurationError
from breedops.jobs import naming
from breedops.jobs.artifacts import ArtifactError, read_artifact, write_artifact
from breedops.jobs.metrics import METRIC_DEFINITIONS, final_metrics, parse_metrics
from breedops.jobs.spec import HyperParameters, TrainingRequest
from breedops.training.train import metrics_line


def test_metric_regexes_parse_the_training_script_lines() -> None:
    log = "\n".join([
        "INFO " + metrics_line(epoch=1, train_loss=1.5, valid_loss=1.25, valid_accuracy=0.5),
        "INFO " + metrics_line(epoch=2, train_loss=0.5, valid_loss=0.25, valid_accuracy=0.9),
        "INFO " + metrics_line(test_loss=0.3, test_accuracy=0.97),
    ])
    assert log.splitlines()[0].endswith(
        "epoch=1; train_loss=1.5000; valid_loss=1.2500; valid_accuracy=0.5000;")
    assert parse_metrics(log)["valid_loss"] == [1.25, 0.25]
    assert final_metrics(log) == {"train_loss": 0.5, "valid_loss": 0.25, "valid_accuracy": 0.9,
                                  "test_loss": 0.3, "test_accuracy": 0.97}
    assert {d["Name"] for d in METRIC_DEFINITIONS} == set(final_metrics(log))


def test_metric_regexes_ignore_a_nan_loss() -> None:
    assert "valid_loss" not in parse_metrics("epoch=1; train_loss=nan; valid_loss=nan;")


def test_job_names_fit_sagemaker_limits_and_start_with_the_prefix() -> None:
    tune = naming.job_name("tune", naming.TUNING_JOB_NAME_MAX, project="breedops-aws")
    train = naming.job_name("train", project="breedops-aws")
    assert len(tune) <= 32 and re.fullmatch(r"breedops-aws-tune-\d{12}", tune)
    assert len(train) <= 63 and re.fullmatch(r"breedops-aws-train-\d{12}-[0-9a-f]{6}", train)
    assert len(naming.trial_job_name(tune, 999)) <= 63
    # The local prefix fills a tuning job name exactly: no room for a random suffix.
    local = naming.job_name("tune", naming.TUNING_JOB_NAME_MAX, project="breedops-local")
    assert len(local) == 32 and local.startswith("breedops-local-tune-")
    with pytest.raises(ValueError, match="exceed 20"):
        naming.job_name("tune", 20)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0.0}, "lr must be positive"),
    ({"lr": -1e-3}, "lr must be positive"),
    ({"arch": "vgg11"}, "unknown architecture 'vgg11'"),
    ({"epochs": 0}, "epochs must be positive"),
])
def test_hyperparameters_reject_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HyperParameters(**kwargs)


def test_hyperparameters_round_trip_through_the_wire_form() -> None:
    hps = HyperParameters(lr=0.01, batch_size=48, epochs=3, arch="resnet34", pretrained=True)
    wire = hps.as_strings()
    assert wire["batch-size"] == "48" and wire["pretrained"] == "true"
    assert HyperParameters.from_strings({**wire, "sagemaker_program": "x.py"}) == hps


def test_spot_request_needs_max_wait_above_max_run() -> None:
    with pytest.raises(ConfigurationError, match="max wait .* > max run"):
        TrainingRequest(bucket="b", dataset="d", role_arn="r", max_run_s=100, max_wait_s=100)
    assert TrainingRequest(bucket="b", dataset="d", role_arn="r", use_spot=False,
                           max_run_s=100, max_wait_s=100)


@pytest.fixture
def s3(aws_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="bucket")
        client.put_object(Bucket="bucket", Key="jobs/j1/output/model.tar.gz", Body=b"x")
        yield client


def test_write_artifact_merges_and_replaces_atomically(s3, tmp_path: Path) -> None:
    url = "s3://bucket/jobs/j1/output/model.tar.gz"
    write_artifact("local", s3, model_data_url=url, training_job_name="j0",
                   training_job_arn="arn:j0", tuning_job_name="t1",
                   best_hyperparameters={"lr": 0.01})
    path = write_artifact("local", s3, model_data_url=url, training_job_name="j1",
                          training_job_arn="arn:j1", test_metrics={"test_accuracy": 0.98})
    assert path == tmp_path / "terraform" / "envs" / "local" / "artifacts.auto.tfvars.json"
    assert json.loads(path.read_text())["model_artifact"] == {
        "model_data_url": url, "training_job_name": "j1", "training_job_arn": "arn:j1",
        "tuning_job_name": "t1", "best_hyperparameters": {"lr": "0.01"},
        "test_metrics": {"test_accuracy": 0.98}}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_write_artifact_refuses_a_model_missing_from_s3(s3, tmp_path: Path) -> None:
    write_artifact("local", s3, model_data_url="s3://bucket/jobs/j1/output/model.tar.gz",
                   training_job_name="j1", training_job_arn="arn:j1")
    before = read_artifact("local")
    with pytest.raises(ArtifactError, match="is not in S3"):
        write_artifact("local", s3, model_data_url="s3://bucket/jobs/j2/output/model.tar.gz",
                       training_job_name="j2", training_job_arn="arn:j2")
    assert read_artifact("local") == before


def test_job_requests_are_built_without_importing_torch_or_the_training_code() -> None:
    """The pipeline fingerprints its job requests on every run, a no-op one too: checking an
    architecture's name must not cost torch's import (seconds), and the defaults come from the
    hyperparameter schema, not from the entry point."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from breedops.jobs.spec import HyperParameters, TrainingRequest, TuningRequest\n"
            "training = TrainingRequest(bucket='b', dataset='dog-images', role_arn='r',\n"
            "    hyperparameters=HyperParameters.of_preset('dog-images', arch='resnet34'))\n"
            "repr(TuningRequest(training=training))\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'breedops.training')\n"
            "             if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"
