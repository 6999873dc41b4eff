"""Drive the Terraform roots: init, plan, apply, destroy, outputs, validation and module tests.

Every function works on `terraform/envs/<env>` under `project_root()`; the local root keeps
its state under `state_dir()`, the aws root reads its S3 backend from `backend.hcl`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breedops.review.checkov import run_checkov
from breedops.review.plan_summary import render, unapproved_protected_changes
from breedops.settings import (
    artifacts_file,
    lambda_zip_path,
    plan_json_file,
    plan_review_file,
    project_root,
    state_dir,
    terraform_env_dir,
)
from breedops.terraform.runner import (
    TerraformError,
    _interrupted,
    _wait,
    first_error,
    run,
    run_json,
    terraform_env,
)

__all__ = [
    "BackgroundApply",
    "ProtectedResourceError",
    "apply",
    "apply_deferring",
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
# Resources whose create waits out a fixed floor in the provider, on AWS as on the emulator, and
# that nothing reads: S3 lifecycle rules (a 10 s delay, then 10 matching reads 5 s apart: 55 s,
# internal/service/s3/bucket_lifecycle_configuration.go). `apply_deferring` applies them last, in
# the background. Glob patterns of resource addresses.
DEFERRABLE = ("*aws_s3_bucket_lifecycle_configuration.*",)


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
    if artifacts_file(env).is_file() and not lambda_zip_path().is_file():
        raise TerraformError(
            f"{artifacts_file(env).name} exists in {root.name}, so serving will be deployed, "
            f"but {lambda_zip_path()} is missing: run `make lambda` first"
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
    root = init(env)
    _check_lambda_zip(env, root)
    plan_file = state_dir() / "terraform" / f"{env}.tfplan"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    run(root, "plan", "-input=false", "-no-color", f"-out={plan_file}", env=env)
    document = run_json(root, "show", "-json", str(plan_file), env=env)
    plan_json = plan_json_file(env)
    plan_md = plan_review_file(env)
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


@dataclass
class BackgroundApply:
    """A full `terraform apply` that runs on while the caller goes on (see `apply_deferring`).

    It holds the state lock: `wait()` for it before the next Terraform command of its root.
    """

    root: Path
    process: subprocess.Popen
    log_file: Path

    def wait(self) -> None:
        """Wait for the apply; raise TerraformError if it failed.

        Interrupts meanwhile count as for every Terraform run here (`runner._wait`): the first
        lets it finish what it started, a second is its graceful stop, a third its immediate one.
        """
        interrupts = _wait(self.process, "apply", self.root)
        if interrupts:
            raise _interrupted("apply", self.root, self.process.returncode, interrupts,
                               self.log_file)
        if self.process.returncode != 0:
            raise TerraformError(
                f"the background terraform apply in {self.root.name} failed: "
                f"{first_error(self.log_file.read_text(errors='replace'))} "
                f"(full output: {self.log_file})")
        log.info("background terraform apply in %s complete (full output: %s)",
                 self.root.name, self.log_file)

    def finish(self) -> None:
        """After a failure or an interrupt elsewhere: wait for it (never kill Terraform: that
        leaves resources outside its state and its lock), whatever its outcome."""
        if self.process.poll() is None:
            log.warning("waiting for the background terraform apply in %s to finish what it "
                        "started (output: %s)", self.root.name, self.log_file)
        with contextlib.suppress(TerraformError):
            self.wait()


def apply_deferring(env: str, log_file: Path,
                    deferrable: tuple[str, ...] = DEFERRABLE) -> tuple[dict[str, Any],
                                                                     BackgroundApply | None]:
    """Apply `env` but the `deferrable` resources, and start a full apply for those.

    Returns the outputs of the first apply and the background apply (None when the plan changes
    no deferrable resource: then the saved plan is applied as it is). Terraform adds to a
    `-target` everything it depends on, so a deferrable resource that another one reads is
    applied in the first round anyway. Once the background apply is done the state is what a
    plain `apply` leaves, and `terraform plan` is clean.
    """
    root = init(env)
    _check_lambda_zip(env, root)
    return _apply_deferring(root, env, log_file, deferrable)


def _apply_deferring(root: Path, env: str | None, log_file: Path,
                     deferrable: tuple[str, ...]) -> tuple[dict[str, Any],
                                                           BackgroundApply | None]:
    plan_file = root / ".terraform" / "deferring.tfplan"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            stream = run(root, "plan", "-input=false", "-json", f"-out={plan_file}", env=env,
                         capture=True).stdout
        except TerraformError:
            # -json words errors as JSON lines: plan again for Terraform's own words.
            run(root, "plan", "-input=false", "-no-color", env=env, log_file=log_file)
            raise
        changes = planned_changes(stream)
        now = [a for a in changes if not any(fnmatch.fnmatchcase(a, p) for p in deferrable)]
        if len(now) == len(changes):
            run(root, "apply", "-input=false", "-no-color", str(plan_file), env=env,
                log_file=log_file)
            return outputs_of(root, env), None
        # A targeted apply writes only the outputs that depend on its targets: the others
        # (name_prefix, code_prefix: variables only) are read from the plan meanwhile.
        with ThreadPoolExecutor(max_workers=1) as pool:
            planned = pool.submit(run_json, root, "show", "-json", str(plan_file), env=env)
            if now:
                run(root, "apply", "-input=false", "-no-color", "-auto-approve",
                    *(f"-target={a}" for a in now), env=env, log_file=log_file)
            document = planned.result() or {}
    finally:
        plan_file.unlink(missing_ok=True)
    deferred = [a for a in changes if a not in now]
    background_log = log_file.with_name(f"{log_file.stem}-background{log_file.suffix}")
    log.info("applied all but %s; a background apply does the rest (output: %s)",
             ", ".join(deferred), background_log)
    with background_log.open("w") as out:
        out.write("$ terraform apply -input=false -no-color -auto-approve\n")
        out.flush()
        # Its own process group, as every Terraform run here: interrupts reach it only as
        # `BackgroundApply.wait` passes them on.
        process = subprocess.Popen(
            [*_terraform(), "apply", "-input=false", "-no-color", "-auto-approve"], cwd=root,
            env=terraform_env(env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, process_group=0)
    known = {name: value["value"] for name, value in
             document.get("planned_values", {}).get("outputs", {}).items() if "value" in value}
    applied = outputs_of(root, env)
    return ({**known, **{k: v for k, v in applied.items() if v is not None or k not in known}},
            BackgroundApply(root, process, background_log))


def planned_changes(plan_json_lines: str) -> list[str]:
    """Addresses of the resources a `terraform plan -json` stream plans to change."""
    addresses = []
    for line in plan_json_lines.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        change = message.get("change") or {}
        if message.get("type") == "planned_change" and change.get("action") not in (
                "noop", "read"):
            addresses.append(change["resource"]["addr"])
    return addresses


def _terraform() -> list[str]:
    executable = shutil.which("terraform")
    if executable is None:
        raise TerraformError("terraform not found on PATH: install Terraform >= 1.7")
    return [executable]


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
    return outputs_of(env_root(env) if initialised else init(env), env)


def outputs_of(root: Path, env: str | None) -> dict[str, Any]:
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
