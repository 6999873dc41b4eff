"""An EC2 instance's boot, on this machine: the rendered user data run by bash as the instance
would run it, with only the instance role's credentials; `shutdown` is a stub that records its
call and the Deep Learning AMI's Python environment is this virtualenv."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# The stand-in for the DLAMI's `source /opt/pytorch/bin/activate`.
PYTHON_ACTIVATE = f'export PATH="{Path(sys.executable).parent}:$PATH"'
# One short epoch on a few digits: seconds on two cores, so checkpointed at every epoch (the
# default interval would write none).
HYPERPARAMETERS = {"epochs": "1", "batch-size": "16", "image-size": "16", "arch": "resnet18",
                   "threads": "2", "seed": "0", "checkpoint-interval": "0"}
# The head of a throw-away root that renders the training_instance module against the emulator.
PROVIDER_TF = """
terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80"
    }
  }
}

provider "aws" {
  region                      = "%(region)s"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
}
"""
SHUTDOWN_STUB = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/shutdown.calls"
"""


@dataclass
class Run:
    returncode: int
    output: str
    shutdown_calls: list[str]
    base: Path


def run_user_data(script: str, credentials: dict[str, str], workdir: Path) -> Run:
    """bash runs `script` as the instance would, with only the instance role's credentials."""
    import subprocess

    stubs = workdir / "stubs"
    stubs.mkdir()
    shutdown = stubs / "shutdown"
    shutdown.write_text(SHUTDOWN_STUB)
    shutdown.chmod(0o755)
    (workdir / "user_data.sh").write_text(script)
    home = workdir / "home"
    home.mkdir()
    env = {  # built from nothing: no admin key, no service token reaches the script
        "PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "PIP_NO_INDEX": "1",  # the requirements are installed here; never reach PyPI
        "BREEDOPS_BASE_DIR": str(workdir / "opt-ml"),
        "BREEDOPS_LOG_FILE": str(workdir / "log" / "breedops-training.log"),
    }
    # The stub must be the `shutdown` bash finds (these tests may run as root).
    found = subprocess.run(["bash", "-c", "command -v shutdown"], env=env, capture_output=True,
                           text=True, check=False).stdout.strip()
    assert found == str(shutdown), f"shutdown resolves to {found!r}, not the stub"
    proc = subprocess.run(["bash", str(workdir / "user_data.sh")], env=env, cwd=workdir,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900, check=False)
    calls_file = stubs / "shutdown.calls"
    calls = calls_file.read_text().splitlines() if calls_file.is_file() else []
    return Run(proc.returncode, proc.stdout, calls, workdir / "opt-ml")
