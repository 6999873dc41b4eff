"""`.local/env`: the variables that point AWS clients at the emulator, read back.

The one reader of the emulator's environment: every `breedops` command, the Terraform driver,
the pipeline and local hosting take it from here, with one rule: what the user set wins.
Kept free of moto imports for that reason.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
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


def emulator_environment(environ: Mapping[str, str], state: Path | None = None) -> dict[str, str]:
    """`environ` with the emulator's variables from `.local/env` where the user set none.

    What the user set wins: with `AWS_ENDPOINT_URL` set they point at an emulator of their own
    (tests, CI) and `.local/env` is not read at all; otherwise each of its variables fills in
    only a variable the user left unset.
    """
    result = dict(environ)
    if "AWS_ENDPOINT_URL" in result:
        return result
    path = (state or state_dir()) / ENV_FILE_NAME
    if not path.is_file():
        raise EmulatorError(
            f"the local environment needs the emulator, but {path} does not exist: "
            "run `make up` first"
        )
    for name, value in read_env_file(path).items():
        result.setdefault(name, value)
    return result


def use_environment(state: Path | None = None) -> None:
    """Point this process's AWS clients at the running emulator (see `emulator_environment`)."""
    if "AWS_ENDPOINT_URL" in os.environ:
        return
    os.environ.update(emulator_environment(os.environ, state))


def use_emulator_when_local(env: str) -> None:
    """`--env local` talks to the emulator that `make up` started, as `.local/env` says."""
    if env == "local":
        use_environment()
