"""Fixtures shared by every test area.

`aws_emulator` gives the session one private emulator (a free port, a temporary state dir) and
points the standard AWS variables at it; `aws_credentials` gives in-process `mock_aws()` tests
fake credentials. Both make sure a developer's real AWS account is never reached. The plugin
`hosted_model` adds a tiny model served by local hosting (`deployment`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from breedops.settings import DEFAULT_REGION

FAKE_ACCOUNT_ID = "123456789012"
pytest_plugins = ["hosted_model"]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C means what it means at a terminal, for pytest and every process it starts.

    A shell without job control (a CI runner, `cmd &` in a script) starts background commands
    with SIGINT ignored, and children inherit an ignored signal: the interrupt tests would send
    a Ctrl-C that nothing hears. A handled signal is reset to the default in a child instead.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _fake_aws_environment(tmp_dir: str) -> dict[str, str]:
    """Fake credentials and region; config files point nowhere so no profile is ever read."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_REGION": DEFAULT_REGION,
        "AWS_CONFIG_FILE": os.path.join(tmp_dir, "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(tmp_dir, "no-aws-credentials"),
    }


def _apply_environment(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    import boto3

    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # boto3's default session keeps the credentials it resolved first: start a fresh one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(scope="session")
def aws_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A private emulator for the whole session; yields its state (with `.url`, `.port`).

    IAM is enforced, as in every emulator: the tests run as its bootstrap admin (the account's
    owner), and hold its service token, so they can act as SageMaker, Lambda or EC2.
    """
    from breedops.local import emulator
    from breedops.local.credentials import SERVICE_TOKEN_VARIABLE

    state = tmp_path_factory.mktemp("emulator-state")
    service = emulator.emulator_service(port=emulator.free_port())
    running = emulator.start_service(service, state)
    secrets = emulator.emulator_credentials(service)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _apply_environment(monkeypatch, {**_fake_aws_environment(str(state)),
                                         **secrets.admin_environment(),
                                         SERVICE_TOKEN_VARIABLE: secrets.service_token})
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        try:
            yield running
        finally:
            emulator.stop_service(service, state)


@pytest.fixture
def use_emulator(monkeypatch: pytest.MonkeyPatch):
    """Point this test's AWS clients at another emulator `Service`, as its bootstrap admin."""
    from breedops.local import emulator
    from breedops.local.credentials import SERVICE_TOKEN_VARIABLE

    def point(service) -> None:
        secrets = emulator.emulator_credentials(service)
        _apply_environment(monkeypatch, {**secrets.admin_environment(),
                                         SERVICE_TOKEN_VARIABLE: secrets.service_token,
                                         "AWS_ENDPOINT_URL": service.url})

    return point


@pytest.fixture
def aws_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Fake credentials for in-process `moto.mock_aws()` tests (no endpoint variables)."""
    _apply_environment(monkeypatch, _fake_aws_environment(str(tmp_path_factory.getbasetemp())))
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
