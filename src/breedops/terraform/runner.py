"""Run the terraform CLI for one root: environment, errors, JSON output.

Plain `subprocess` rather than python-terraform: the few commands needed take a handful of
flags, and `-json` output is easier to read directly than through an unmaintained wrapper.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError, EmulatorError
from breedops.interrupts import Interrupted
from breedops.local.env_file import emulator_environment
from breedops.settings import lambda_zip_path, project_root, state_dir, terraform_env_dir

log = logging.getLogger(__name__)

# Interrupts forwarded to Terraform after the first (see `_wait`): its graceful stop, then its
# immediate one.
FORWARDED_INTERRUPTS = 2


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

    What the user set wins over .local/env, so tests and CI can point at their own emulator.
    """
    result = dict(os.environ)
    result["TF_IN_AUTOMATION"] = "1"
    config = cli_config_file()
    if config is not None:
        result["TF_CLI_CONFIG_FILE"] = str(config)
    else:
        result.pop("TF_CLI_CONFIG_FILE", None)
    if env is not None:
        # The package's one path (settings), relative to the root Terraform runs in, so that the
        # state holds the same `filename` on every machine.
        result["TF_VAR_lambda_zip_path"] = os.path.relpath(lambda_zip_path(),
                                                            terraform_env_dir(env))
    if env == "local":
        try:
            result = emulator_environment(result)
        except EmulatorError as e:
            raise TerraformError(str(e)) from None
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
    way errors are summarised. On an interrupt (Ctrl-C, SIGTERM) Terraform is waited for, and
    is passed only the interrupts after the first: see `_wait`.
    """
    executable = shutil.which("terraform")
    if executable is None:
        raise TerraformError("terraform not found on PATH: install Terraform >= 1.7")
    command = [executable, *args]
    log.info("terraform %s (in %s)", " ".join(args), _relative(root))
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(tempfile.TemporaryFile("w+"))
        stdout = files.enter_context(tempfile.TemporaryFile("w+")) if capture else None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            stdout = files.enter_context(log_file.open("a"))
            stdout.write(f"\n$ terraform {' '.join(args)}\n")
            stdout.flush()
        # Its own process group: the terminal's Ctrl-C reaches only us, and `_wait` decides
        # what Terraform gets (it takes a second SIGINT as "stop now, lose data", so it must
        # never get the terminal's and ours for one keypress).
        proc = subprocess.Popen(command, cwd=root, env=terraform_env(env), text=True,
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                process_group=0)
        interrupts = _wait(proc, args[0], root)
        stderr.seek(0)
        err = stderr.read()
        out = ""
        if capture and stdout is not None:
            stdout.seek(0)
            out = stdout.read()
        if log_file is not None and err:
            stdout.write(err)
    if not capture and err:
        log.debug("terraform stderr: %s", err)
    if interrupts:
        detail = first_error(err + "\n" + out) if proc.returncode else ""
        exit_ = f"exit {proc.returncode}" + (f": {detail}" if detail else "")
        raise _interrupted(args[0], root, exit_, interrupts, log_file)
    if proc.returncode != 0:
        detail = first_error(err + "\n" + out)
        where = f" (full output: {log_file})" if log_file is not None else ""
        raise TerraformError(f"terraform {args[0]} failed in {_relative(root)}: {detail}{where}")
    return subprocess.CompletedProcess(command, proc.returncode, out if capture else None, err)


def _wait(proc: subprocess.Popen, command: str, root: Path) -> int:
    """Wait for Terraform to exit; return how many interrupts arrived meanwhile.

    The first interrupt is not passed on: Terraform finishes what it started, so that every
    resource it creates is in its state. Terraform's own graceful stop (its first SIGINT) asks
    the provider to stop, and the AWS provider then cancels its calls in flight: a CreateBucket
    or CreateRole that the service has done but whose answer is cancelled leaves a resource
    outside the state, and the next apply fails on it (measured on the emulator). A second
    interrupt is Terraform's graceful stop, a third its immediate one. Never SIGKILL: a killed
    Terraform also leaves its lock.
    """
    interrupts = 0
    while True:
        try:
            proc.wait()
            return interrupts
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                log.warning("interrupt: terraform %s in %s finishes what it started, so that its "
                            "state holds every resource it made; waiting for it. Interrupt "
                            "again to stop it now (it then cancels its calls in flight, which "
                            "can leave a resource outside its state)", command, _relative(root))
            elif interrupts <= 1 + FORWARDED_INTERRUPTS:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
                log.warning("interrupt %d: terraform %s %s", interrupts, command,
                            "stops its operations and saves its state" if interrupts == 2
                            else "stops at once")
            else:
                log.warning("terraform %s is stopping; waiting for it to exit", command)


def _interrupted(command: str, root: Path, exit_: str, interrupts: int,
                 log_file: Path | None) -> Interrupted:
    """What an interrupt left: `exit_` is Terraform's exit code, with its error if it failed."""
    where = f"; its output: {log_file}" if log_file is not None else ""
    if interrupts == 1:
        return Interrupted(
            f"terraform {command} in {_relative(root)} finished what it had started ({exit_}), "
            f"then stopped: state is saved and its lock released; run `make "
            f"apply` again{where}")
    if interrupts == 2:
        return Interrupted(
            f"terraform {command} in {_relative(root)} was stopped ({exit_}): state "
            f"is saved and its lock released, but a resource it was creating may exist outside "
            f"the state; if `make apply` then fails on a resource that already exists, import "
            f"it (`terraform import`){where}")
    return Interrupted(
        f"terraform {command} in {_relative(root)} was stopped at once ({exit_}): "
        f"resources it was creating may be missing from its state. Run `make plan` to see what "
        f"it will do; if it reports the state locked, `terraform force-unlock` it{where}")


def run_json(root: Path, *args: str, env: str | None = None) -> Any:
    """Run a terraform command whose stdout is one JSON document and parse it."""
    return json.loads(run(root, *args, env=env, capture=True).stdout or "null")


def _relative(root: Path) -> str:
    try:
        return str(root.resolve().relative_to(project_root()))
    except ValueError:
        return str(root)
