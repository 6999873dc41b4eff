"""Run the terraform CLI for one root: environment, errors, JSON output.

Plain `subprocess` rather than python-terraform: the few commands needed take a handful of
flags, and `-json` output is easier to read directly than through an unmaintained wrapper.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError
from breedops.local.env_file import read_env_file
from breedops.settings import project_root, state_dir

log = logging.getLogger(__name__)

# Variables of the emulator that `make up` writes to .local/env (contract 1).
EMULATOR_ENV_FILE = "env"


class TerraformError(BreedopsError):
    """A terraform command failed; the message names the root and terraform's first error."""


def cli_config_file() -> Path | None:
    """The CLI config that points provider installation at the offline mirror, if any.

    An existing `TF_CLI_CONFIG_FILE` wins; one that names a missing file counts as unset.
    """
    configured = os.environ.get("TF_CLI_CONFIG_FILE")
    if configured and Path(configured).is_file():
        return Path(configured)
    candidate = state_dir() / "terraform.rc"
    return candidate if candidate.is_file() else None


def terraform_env(env: str | None = None) -> dict[str, str]:
    """The process environment for terraform; for `local`, with the emulator's variables.

    Variables already set win over .local/env, so tests and CI can point at their own emulator.
    """
    result = dict(os.environ)
    result["TF_IN_AUTOMATION"] = "1"
    config = cli_config_file()
    if config is not None:
        result["TF_CLI_CONFIG_FILE"] = str(config)
    else:
        result.pop("TF_CLI_CONFIG_FILE", None)
    if env == "local" and "AWS_ENDPOINT_URL" not in result:
        env_file = state_dir() / EMULATOR_ENV_FILE
        if not env_file.is_file():
            raise TerraformError(
                f"the local environment needs the emulator, but {env_file} does not exist: "
                "run `make up` first"
            )
        for name, value in read_env_file(env_file).items():
            result.setdefault(name, value)
    return result


def first_error(output: str) -> str:
    """The first `Error:` line of terraform's output, or its last non-empty line."""
    lines = [line.strip("│╷╵ \t") for line in output.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if line.startswith("Error:"):
            return line
    return lines[-1] if lines else "no output"


def run(
    root: Path,
    *args: str,
    env: str | None = None,
    capture: bool = False,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `terraform <args>` in `root`; raise TerraformError naming the root on failure.

    Output streams to the console unless `capture`, or goes to the end of `log_file`; either
    way errors are summarised.
    """
    executable = shutil.which("terraform")
    if executable is None:
        raise TerraformError("terraform not found on PATH: install Terraform >= 1.7")
    command = [executable, *args]
    log.info("terraform %s (in %s)", " ".join(args), _relative(root))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as out:
            out.write(f"\n$ terraform {' '.join(args)}\n")
            out.flush()
            proc = subprocess.run(command, cwd=root, env=terraform_env(env), text=True,
                                  stdout=out, stderr=subprocess.PIPE, check=False)
        if proc.stderr:
            with log_file.open("a") as out:
                out.write(proc.stderr)
    else:
        proc = subprocess.run(
            command,
            cwd=root,
            env=terraform_env(env),
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
            check=False,
        )
    if not capture and proc.stderr:
        log.debug("terraform stderr: %s", proc.stderr)
    if proc.returncode != 0:
        detail = first_error((proc.stderr or "") + "\n" + (proc.stdout or ""))
        where = f" (full output: {log_file})" if log_file is not None else ""
        raise TerraformError(f"terraform {args[0]} failed in {_relative(root)}: {detail}{where}")
    return proc


def run_json(root: Path, *args: str, env: str | None = None) -> Any:
    """Run a terraform command whose stdout is one JSON document and parse it."""
    return json.loads(run(root, *args, env=env, capture=True).stdout or "null")


def _relative(root: Path) -> str:
    try:
        return str(root.resolve().relative_to(project_root()))
    except ValueError:
        return str(root)
