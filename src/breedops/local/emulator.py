"""The local services behind `breedops local up|down|status`: the emulator and local hosting.

The emulator (moto server, our extensions, a persistent journal) and local SageMaker hosting
(`local.hosting`), each a process of its own. `up` writes `.local/env` with the standard AWS
variables that point every client at them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

from breedops.errors import ConfigurationError
from breedops.local import credentials
from breedops.local.env_file import ENV_FILE_NAME
from breedops.local.hosting import server as hosting_server
from breedops.local.journal import HEALTH_PATH
from breedops.local.services import (
    Service,
    ServiceState,
    free_port,
    service_status,
    start_service,
    state_lock,
    stop_service,
    write_atomically,
)
from breedops.settings import DEFAULT_REGION, state_dir

__all__ = [
    "ENV_FILE_NAME",
    "down",
    "emulator_credentials",
    "emulator_service",
    "environment",
    "free_port",
    "hosting_service",
    "services",
    "start_service",
    "status",
    "stop_service",
    "up",
]

log = logging.getLogger(__name__)

EMULATOR_PORT_VARIABLE = "BREEDOPS_EMULATOR_PORT"
HOSTING_PORT_VARIABLE = "BREEDOPS_HOSTING_PORT"
DEFAULT_EMULATOR_PORT = 5566
DEFAULT_HOSTING_PORT = 5567
# Held by `up` and `down` for their whole run: the services, the credentials they are given and
# `.local/env` change together, so a concurrent `up` finds everything started, and a `down`
# racing an `up` stops what the `up` started.
SERVICES_LOCK = "services"


def _port_from_environment(variable: str, default: int) -> int:
    raw = os.environ.get(variable, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigurationError(f"{variable}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"{variable}={port} is outside the port range 1-65535")
    return port


def emulator_service(port: int | None = None, state: Path | None = None) -> Service:
    """The moto server with our extensions; its journal and its credentials (the bootstrap
    admin's key, the service token) live under `state` when given, else in memory only."""
    port = port or _port_from_environment(EMULATOR_PORT_VARIABLE, DEFAULT_EMULATOR_PORT)
    argv = [sys.executable, "-m", "breedops.local.server", "--port", str(port)]
    if state is not None:
        argv += ["--state-dir", str(state / "emulator")]
    secrets = credentials.load_or_create(state / "emulator" if state is not None else None)
    return Service(name="emulator", argv=argv, port=port, health_path=HEALTH_PATH,
                   env=secrets.server_environment())


def emulator_credentials(service: Service) -> credentials.EmulatorCredentials:
    """The bootstrap admin's key and the service token a started emulator holds."""
    found = credentials.from_environment(service.env)
    if found is None:
        raise ConfigurationError(f"{service.name} was not given emulator credentials")
    return found


def hosting_service(port: int | None = None, emulator_url: str | None = None,
                    secrets: credentials.EmulatorCredentials | None = None) -> Service:
    """Local SageMaker hosting.

    With `emulator_url`, hosting is given that emulator's variables explicitly, so it never
    resolves endpoints against whatever emulator the caller's environment points at; with
    `secrets`, it acts as SageMaker with the admin's key and the service token.
    """
    port = port or _port_from_environment(HOSTING_PORT_VARIABLE, DEFAULT_HOSTING_PORT)
    argv = [sys.executable, "-m", hosting_server.__name__, "--host", "127.0.0.1", "--port", str(port)]
    env = {}
    if emulator_url and secrets:
        env = {**environment(emulator_url, f"http://127.0.0.1:{port}", secrets),
               credentials.SERVICE_TOKEN_VARIABLE: secrets.service_token}
    return Service(name="hosting", argv=argv, port=port, health_path="/ping", env=env)


def services(state: Path) -> list[Service]:
    """The services `up` starts, in start order."""
    emulator = emulator_service(state=state)
    hosting = hosting_service(emulator_url=emulator.url, secrets=emulator_credentials(emulator))
    # Functions the emulator runs call SageMaker Runtime: local hosting, not moto's filler.
    emulator = dataclasses.replace(emulator, env={
        **emulator.env, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": hosting.url})
    return [emulator, hosting]


def environment(emulator_url: str, hosting_url: str,
                secrets: credentials.EmulatorCredentials) -> dict[str, str]:
    """The variables that point boto3, the AWS CLI, the SDKs and Terraform at the emulator, as
    its bootstrap admin (the account's owner: Terraform deploys as it)."""
    return {
        "AWS_ENDPOINT_URL": emulator_url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": hosting_url,
        **secrets.admin_environment(),
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_REGION": DEFAULT_REGION,
    }


def write_env_file(state: Path, variables: dict[str, str]) -> Path:
    path = state / ENV_FILE_NAME
    lines = ["# Written by `breedops local up`: source it to point AWS clients at the emulator."]
    lines += [f"export {name}={value}" for name, value in variables.items()]
    write_atomically(path, "\n".join(lines) + "\n")
    return path


def up(state: Path | None = None) -> list[ServiceState]:
    """Start every local service (a no-op for those already running) and write `.local/env`."""
    state = state or state_dir()
    with state_lock(state, SERVICES_LOCK):
        return _up_locked(state)


def _up_locked(state: Path) -> list[ServiceState]:
    found = services(state)
    started = [start_service(service, state) for service in found]
    emulator = started[0]
    hosting_port = _port_from_environment(HOSTING_PORT_VARIABLE, DEFAULT_HOSTING_PORT)
    hosting_url = next(
        (s.url for s in started if s.name == "hosting"), f"http://127.0.0.1:{hosting_port}"
    )
    secrets = emulator_credentials(found[0])
    env_file = write_env_file(state, environment(emulator.url, hosting_url, secrets))
    log.info("wrote %s", env_file)
    return started


def down(state: Path | None = None) -> list[str]:
    """Stop every local service, hosting first; the emulator's journal stays for the next up."""
    state = state or state_dir()
    with state_lock(state, SERVICES_LOCK):
        return [service.name for service in reversed(_known_services(state))
                if stop_service(service, state)]


def status(state: Path | None = None) -> list[ServiceState]:
    """Running or stopped, pid, url and log of every local service."""
    state = state or state_dir()
    return [service_status(service, state) for service in _known_services(state)]


def _known_services(state: Path) -> list[Service]:
    """Every service that may run: `down` must stop a hosting started earlier."""
    return [emulator_service(state=state), hosting_service()]
