"""The pipeline's first stage points every later client at the emulator from `.local/env`,
without overriding what the user set in their own environment."""

from __future__ import annotations

import os

import pytest

from breedops.local import emulator
from breedops.pipeline.apply import PipelineOptions, build_stages

ENV_FILE = ("export AWS_ENDPOINT_URL=http://127.0.0.1:5566\n"
            "export AWS_ACCESS_KEY_ID=from-env-file\n"
            "export AWS_REGION=us-east-1\n")


@pytest.fixture
def services_stage(tmp_path, monkeypatch):
    """The local services stage, with `.local/env` written and `up` a no-op."""
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    (tmp_path / "env").write_text(ENV_FILE)
    monkeypatch.setattr(emulator, "up", lambda state=None: [])
    stage = build_stages(PipelineOptions(env="local"))[0]
    assert stage.name == "services"
    return stage


def test_services_stage_keeps_the_users_emulator(services_stage, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7001")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "the-users-key")
    outputs = services_stage.run({})
    assert outputs == {"aws_endpoint_url": "http://127.0.0.1:7001"}
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:7001"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "the-users-key"


def test_services_stage_fills_in_only_what_the_user_left_unset(services_stage, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    outputs = services_stage.run({})
    assert outputs == {"aws_endpoint_url": "http://127.0.0.1:5566"}
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env-file"
    assert os.environ["AWS_REGION"] == "eu-west-1"
