"""`.local/env` read back: one rule for every reader, what the user set wins."""

from __future__ import annotations

import os

import pytest

from breedops.errors import EmulatorError
from breedops.local.env_file import emulator_environment, use_environment


@pytest.fixture
def state(tmp_path):
    (tmp_path / "env").write_text("# Written by `breedops local up`\n"
                                  "export AWS_ENDPOINT_URL=http://127.0.0.1:5566\n"
                                  "export AWS_REGION='us-east-1'\n")
    return tmp_path


def test_emulator_environment_fills_in_unset_variables_only(state):
    found = emulator_environment({"AWS_REGION": "eu-west-1", "HOME": "/home/u"}, state)
    assert found == {"AWS_ENDPOINT_URL": "http://127.0.0.1:5566", "AWS_REGION": "eu-west-1",
                     "HOME": "/home/u"}


def test_emulator_environment_with_the_users_endpoint_ignores_the_env_file(state):
    user = {"AWS_ENDPOINT_URL": "http://127.0.0.1:7001"}
    assert emulator_environment(user, state) == user


def test_emulator_environment_without_env_file_says_to_run_make_up(tmp_path):
    with pytest.raises(EmulatorError, match=r"does not exist: run `make up` first"):
        emulator_environment({}, tmp_path)


def test_use_environment_sets_what_the_user_left_unset(state, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    use_environment(state)
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5566"
    assert os.environ["AWS_REGION"] == "eu-west-1"
