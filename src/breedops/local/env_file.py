"""`.local/env`: the variables that point AWS clients at the emulator, read back.

Kept free of moto imports: the Terraform driver and every `breedops` command read it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from breedops.errors import EmulatorError
from breedops.settings import state_dir

ENV_FILE_NAME = "env"


def read_env_file(path: Path) -> dict[str, str]:
    """Parse the `export NAME=value` lines of a shell env file."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export ") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        parsed = shlex.split(value)
        values[name.strip()] = parsed[0] if parsed else ""
    return values


def use_environment(state: Path | None = None) -> None:
    """Point this process's AWS clients at the running emulator, from `.local/env`.

    Variables already set win, so tests and CI can point at an emulator of their own.
    """
    if "AWS_ENDPOINT_URL" in os.environ:
        return
    path = (state or state_dir()) / ENV_FILE_NAME
    if not path.is_file():
        raise EmulatorError(
            f"the local environment needs the emulator, but {path} does not exist: "
            "run `make up` first"
        )
    for name, value in read_env_file(path).items():
        os.environ.setdefault(name, value)


def use_emulator_when_local(env: str) -> None:
    """`--env local` talks to the emulator that `make up` started, as `.local/env` says."""
    if env == "local":
        use_environment()
