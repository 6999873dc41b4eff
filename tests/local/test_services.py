"""`up`/`down`/`status` of background services, and the emulator's state across a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from breedops.errors import EmulatorError
from breedops.local import emulator
from breedops.local.env_file import read_env_file
from breedops.local.services import (
    Service,
    free_port,
    pidfile_path,
    service_status,
    start_service,
    stop_service,
)

pytestmark = pytest.mark.emulator


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def service(state: Path) -> Service:
    return emulator.emulator_service(port=free_port(), state=state)


@pytest.fixture
def running(service: Service, state: Path):
    try:
        yield start_service(service, state)
    finally:
        stop_service(service, state)


def test_start_service_answers_health_and_status_reports_running(service, state, running):
    status = service_status(service, state)

    assert running.running and status.running
    assert status.pid == running.pid
    assert status.url == f"http://127.0.0.1:{service.port}"
    assert status.log_path.exists()


def test_start_service_twice_is_a_noop(service, state, running):
    again = start_service(service, state)

    assert again.pid == running.pid


def test_stop_service_stops_and_then_reports_stopped(service, state, running):
    assert stop_service(service, state) is True

    assert not service_status(service, state).running
    assert not pidfile_path(service, state).exists()
    assert stop_service(service, state) is False


def test_start_service_with_stale_pidfile_of_dead_process_recovers(service, state):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.mkdir(parents=True, exist_ok=True)
    pidfile_path(service, state).write_text(
        json.dumps({"pid": dead.pid, "port": service.port, "create_time": 0.0})
    )
    assert not service_status(service, state).running

    try:
        started = start_service(service, state)
        assert started.running and started.pid != dead.pid
    finally:
        stop_service(service, state)


def test_start_service_with_pid_reused_by_another_program_recovers(service, state):
    # Our own pid stands for a pid the system gave to another program since.
    state.mkdir(parents=True, exist_ok=True)
    pidfile_path(service, state).write_text(
        json.dumps({"pid": os.getpid(), "port": service.port, "create_time": 1.0})
    )
    assert not service_status(service, state).running

    try:
        started = start_service(service, state)
        assert started.pid != os.getpid()
    finally:
        assert stop_service(service, state) is True
    assert psutil_alive(os.getpid())


def psutil_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def test_start_service_on_a_taken_port_raises(state):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = emulator.emulator_service(port=port, state=state)

        with pytest.raises(EmulatorError, match=f"port {port} on 127.0.0.1 is taken"):
            start_service(service, state)


def test_start_service_that_exits_raises_with_its_log(state):
    failing = Service(
        name="failing", argv=[sys.executable, "-c", "import sys; sys.exit('boom')"],
        port=free_port(), health_path="/",
    )

    with pytest.raises(EmulatorError, match="exited with code 1 while starting(.|\n)*boom"):
        start_service(failing, state)


def test_up_writes_env_file_and_down_stops(state, monkeypatch):
    monkeypatch.setenv("BREEDOPS_EMULATOR_PORT", str(free_port()))
    hosting_port = free_port()
    monkeypatch.setenv("BREEDOPS_HOSTING_PORT", str(hosting_port))
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(state))  # hosting's model cache
    try:
        started = emulator.up(state)
        env = (state / "env").read_text()
        variables = read_env_file(state / "env")
        caller = boto3.client(
            "sts", endpoint_url=variables["AWS_ENDPOINT_URL"], region_name="us-east-1",
            aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"]).get_caller_identity()
        stranger = boto3.client("iam", endpoint_url=variables["AWS_ENDPOINT_URL"],
                                region_name="us-east-1", aws_access_key_id="testing",
                                aws_secret_access_key="testing")
        with pytest.raises(ClientError, match="InvalidClientTokenId"):
            stranger.list_users()
    finally:
        stopped = emulator.down(state)

    # The env file holds the bootstrap admin's key, which the enforcing emulator accepts;
    # the service token stays out of it.
    assert caller["Arn"] == "arn:aws:iam::123456789012:user/breedops-admin"
    assert "SERVICE_TOKEN" not in env
    assert [s.name for s in started] == ["emulator", "hosting"]
    assert f"export AWS_ENDPOINT_URL={started[0].url}\n" in env
    assert f"export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:{hosting_port}\n" in env
    assert "export AWS_REGION=us-east-1\n" in env
    assert stopped == ["hosting", "emulator"]
    assert not any(s.running for s in emulator.status(state))


def test_emulator_port_variable_not_a_number_raises(monkeypatch):
    from breedops.errors import ConfigurationError

    monkeypatch.setenv("BREEDOPS_EMULATOR_PORT", "abc")

    with pytest.raises(ConfigurationError, match="BREEDOPS_EMULATOR_PORT='abc'"):
        emulator.emulator_service()


def test_cli_status_when_stopped_prints_and_exits_3(tmp_path, monkeypatch, capsys):
    import argparse

    from breedops.local import cli

    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["local", "status"])

    assert args.func(args) == 3
    assert "emulator: stopped" in capsys.readouterr().out
