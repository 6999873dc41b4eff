"""Project-wide locations and settings, all overridable from the environment.

The Makefile runs every command from the repository root, so paths default relative to the
current directory; `BREEDOPS_ROOT` pins them elsewhere (tests use it for isolation).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_REGION = "us-east-1"
DEFAULT_PROJECT = "breedops"
# The bucket prefix of staged job source (Terraform: data_bucket's prefixes.code, less the slash).
DEFAULT_CODE_PREFIX = "code"
ENVIRONMENTS = ("local", "aws")


def project_root() -> Path:
    """The repository root: `BREEDOPS_ROOT`, or the current directory."""
    return Path(os.environ.get("BREEDOPS_ROOT", os.getcwd())).resolve()


def state_dir() -> Path:
    """Where local services keep pidfiles, logs, the env file and emulator state."""
    override = os.environ.get("BREEDOPS_STATE_DIR")
    return Path(override).resolve() if override else project_root() / ".local"


def build_dir() -> Path:
    """Where build outputs go (`make clean` removes it)."""
    return project_root() / "build"


def lambda_zip_path() -> Path:
    """The Lambda deployment package: `make lambda` builds it, Terraform deploys it."""
    return build_dir() / "lambda.zip"


def terraform_env_dir(env: str) -> Path:
    """The Terraform root of an environment (`local` or `aws`)."""
    return project_root() / "terraform" / "envs" / env


def plan_json_file(env: str) -> Path:
    """The env's last plan as `terraform show -json` writes it (the IAM linter reads it)."""
    return terraform_env_dir(env) / "plan.json"


def plan_review_file(env: str) -> Path:
    """PLAN.md: the env's last plan, summarised for review in a pull request."""
    return terraform_env_dir(env) / "PLAN.md"


def artifacts_file(env: str) -> Path:
    """The tfvars file through which training artifacts flow into Terraform."""
    return terraform_env_dir(env) / "artifacts.auto.tfvars.json"
