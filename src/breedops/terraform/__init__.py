"""Drive the Terraform roots: init, plan, apply, destroy, outputs, validation and module tests.

Every function works on `terraform/envs/<env>` under `project_root()`; the local root keeps
its state under `state_dir()`, the aws root reads its S3 backend from `backend.hcl`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from breedops.settings import artifacts_file, project_root, state_dir, terraform_env_dir
from breedops.terraform.plan_summary import render, unapproved_protected_changes
from breedops.terraform.runner import TerraformError, run, run_json

__all__ = [
    "ProtectedResourceError",
    "TerraformError",
    "apply",
    "destroy",
    "destroy_targets",
    "init",
    "module_dirs",
    "outputs",
    "plan",
    "test_modules",
    "validate_all",
]

log = logging.getLogger(__name__)

# Kept by a destroy without --force: the data and the key that decrypts it.
PROTECTED_MODULE = "module.platform.module.data_bucket"
AWS_BACKEND_CONFIG = "backend.hcl"
# Outputs every env root declares (contract 7); terraform leaves null ones out of its JSON.
CONTRACT_OUTPUTS = (
    "bucket_name", "kms_key_arn", "sagemaker_execution_role_arn", "operator_policy_arn",
    "endpoint_name", "lambda_function_name", "lambda_alias_name", "name_prefix",
)


def env_root(env: str) -> Path:
    """The root of `env`, checked to exist."""
    root = terraform_env_dir(env)
    if not (root / "main.tf").is_file():
        raise TerraformError(f"no Terraform environment {env!r}: {root} has no main.tf")
    return root


def module_dirs() -> list[Path]:
    """Every module under terraform/modules, sorted by name."""
    modules = project_root() / "terraform" / "modules"
    return sorted(p.parent for p in modules.glob("*/main.tf"))


def backend_args(env: str, root: Path) -> list[str]:
    """`-backend-config` flags: the state file under state_dir() locally, backend.hcl on aws."""
    if env == "local":
        state = state_dir() / "terraform" / "local.tfstate"
        state.parent.mkdir(parents=True, exist_ok=True)
        return [f"-backend-config=path={state}"]
    config = root / AWS_BACKEND_CONFIG
    if not config.is_file():
        raise TerraformError(
            f"{config} is missing: copy {AWS_BACKEND_CONFIG}.example, set the state bucket, "
            "key and region"
        )
    return [f"-backend-config={AWS_BACKEND_CONFIG}"]


def init(env: str) -> Path:
    """`terraform init` of `env` with its backend; returns the root."""
    root = env_root(env)
    run(root, "init", "-input=false", "-no-color", "-reconfigure", *backend_args(env, root),
        env=env, capture=True)
    return root


def _check_lambda_zip(env: str, root: Path) -> None:
    """Serving needs the Lambda zip; say how to build it rather than let Terraform fail."""
    if artifacts_file(env).is_file() and not (project_root() / "build" / "lambda.zip").is_file():
        raise TerraformError(
            f"{artifacts_file(env).name} exists in {root.name}, so serving will be deployed, "
            "but build/lambda.zip is missing: run `make lambda` first"
        )


class ProtectedResourceError(TerraformError):
    """The plan destroys or replaces a stateful resource that no override allows."""


def plan(env: str, fail_on_protected: bool = False,
         allow_destroy: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Plan `env`; write plan.json (terraform show -json) and PLAN.md in the root.

    With `fail_on_protected`, raise ProtectedResourceError (after writing both files, so the
    review still shows why) when the plan destroys or replaces a bucket, key or log group whose
    address (or module) is not in `allow_destroy`.
    """
    from breedops.review.checkov import run_checkov

    root = init(env)
    _check_lambda_zip(env, root)
    plan_file = state_dir() / "terraform" / f"{env}.tfplan"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    run(root, "plan", "-input=false", "-no-color", f"-out={plan_file}", env=env)
    document = run_json(root, "show", "-json", str(plan_file), env=env)
    plan_json = root / "plan.json"
    plan_md = root / "PLAN.md"
    checkov = run_checkov(project_root() / "terraform")
    _write_atomically(plan_json, json.dumps(document, indent=1))
    _write_atomically(plan_md, render(env, document, checkov=checkov, allowed=allow_destroy))
    unapproved = unapproved_protected_changes(document, allow_destroy)
    if fail_on_protected and unapproved:
        raise ProtectedResourceError(
            f"the plan of {env} destroys or replaces protected resources: "
            f"{', '.join(unapproved)}; if that is intended, repeat with "
            + " ".join(f"--allow-destroy {a}" for a in unapproved)
        )
    return plan_json, plan_md


def apply(env: str, variables: dict[str, Any] | None = None,
          log_file: Path | None = None) -> dict[str, Any]:
    """Apply `env` (base, plus serving once an artifact exists); return its outputs.

    With `log_file`, terraform's output goes there and one summary line is logged.
    """
    root = init(env)
    _check_lambda_zip(env, root)
    run(root, "apply", "-input=false", "-no-color", "-auto-approve", *_var_args(variables),
        env=env, log_file=log_file)
    if log_file is not None:
        summary = [line for line in log_file.read_text().splitlines()
                   if line.startswith("Apply complete!")]
        log.info("%s (full output: %s)", summary[-1] if summary else "applied", log_file)
    return outputs(env, initialised=True)


def destroy(env: str, force: bool = False) -> None:
    """Destroy `env`. Without `force`, the data bucket and its key stay.

    Without force everything but the bucket module is targeted; with force the bucket is
    first switched to `force_destroy` (an apply), because S3 refuses to delete a bucket that
    still holds objects and the provider only empties it when the state says so.
    """
    root = init(env)
    addresses = run(root, "state", "list", env=env, capture=True).stdout.split()
    if not addresses:
        log.info("nothing to destroy in %s", env)
        return
    if force:
        forced = {"force_destroy_bucket": True}
        run(root, "apply", "-input=false", "-no-color", "-auto-approve",
            f"-target={PROTECTED_MODULE}", *_var_args(forced), env=env)
        run(root, "destroy", "-input=false", "-no-color", "-auto-approve", *_var_args(forced),
            env=env)
        return
    targets = destroy_targets(addresses)
    if not targets:
        log.info("only the protected data bucket is left in %s; use --force to delete it", env)
        return
    run(root, "destroy", "-input=false", "-no-color", "-auto-approve",
        *(f"-target={t}" for t in targets), env=env)
    log.info("kept %s (its data and key); destroy --force deletes it", PROTECTED_MODULE)


def outputs(env: str, initialised: bool = False) -> dict[str, Any]:
    """The outputs of `env` as plain values (contract 7), null ones as None."""
    root = env_root(env) if initialised else init(env)
    raw = run_json(root, "output", "-json", env=env) or {}
    values = dict.fromkeys(CONTRACT_OUTPUTS)
    values.update((name, value["value"]) for name, value in raw.items())
    return values


def validate_all() -> None:
    """`fmt -check`, `init -backend=false` and `validate` in every module and environment."""
    roots = module_dirs() + sorted(p.parent for p in (project_root() / "terraform" / "envs")
                                   .glob("*/main.tf"))
    for root in roots:
        run(root, "fmt", "-check", "-recursive", "-no-color", capture=True)
        run(root, "init", "-backend=false", "-input=false", "-no-color", capture=True)
        run(root, "validate", "-no-color", capture=True)
        log.info("valid: %s", root.relative_to(project_root()))


def test_modules() -> None:
    """`terraform test` in every module (mock providers: no emulator needed)."""
    for root in module_dirs():
        run(root, "init", "-backend=false", "-input=false", "-no-color", capture=True)
        run(root, "test", "-no-color")


def destroy_targets(addresses: list[str]) -> list[str]:
    """The innermost modules (or root resources) in state, less the protected bucket module.

    Targeting modules rather than every resource keeps the command short; data sources are
    read, not destroyed, so they never need a target of their own.
    """
    targets = set()
    for address in addresses:
        match = re.match(r"^((?:module\.[^.\[]+(?:\[[^\]]*\])?\.)*)(.*)$", address)
        modules, resource = match.group(1).rstrip("."), match.group(2)
        if resource.startswith("data."):
            continue
        targets.add(modules or resource)
    return sorted(t for t in targets if not t.startswith(PROTECTED_MODULE))


def _var_args(variables: dict[str, Any] | None) -> list[str]:
    return [f"-var={name}={json.dumps(value)}" for name, value in (variables or {}).items()]


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)
