"""One real, reduced `make apply`, read by every test of this package.

The run is the pipeline's own `apply()` in a sandboxed project with its own emulator and
hosting (free ports): small digits, 2 trials, 1 epoch. `make apply` never takes the EC2
training path locally (the instance needs a Deep Learning AMI), so the fixture takes it after
the pipeline: the user data that the `training_instance` module renders runs in bash, once, on
fewer digits, with only the credentials of the instance role, which is created as the `iam`
module declares it (its trust and policy documents from the run's Terraform state). The
emulator audits every IAM decision of all this; the least-privilege tests read that audit
(`test_least_privilege.py`) and make their denied calls in the same account
(`test_deny_matrix.py`); `test_pipeline_end_to_end.py` checks what the run produced. One run
(about four minutes on two cores) serves them all.

Package-scoped (this folder is a package, so the services stop after its last test). Tests
that change the deployment (the no-op re-apply, destroy) are marked `changes_the_pipeline`
and run after every other test here, whatever their file's name.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from ec2_instance import HYPERPARAMETERS, PROVIDER_TF, PYTHON_ACTIVATE, run_user_data
from sandbox import make_sandbox, small_digits

from breedops.settings import DEFAULT_REGION

TRAIN_PER_CLASS, HELD_OUT_PER_CLASS = 40, 6
TRIALS, EPOCHS = 2, 1
ENV = "local"
CHANGES_THE_PIPELINE = "changes_the_pipeline"
# The EC2 path's instance, job, data and hyperparameters: one short epoch on fewer digits
# (its calls are what matters here, and the end-to-end test already checks a model).
INSTANCE_ID = "i-0123456789abcdef0"
EC2_JOB = "ec2-train-security"
EC2_TRAIN_PER_CLASS, EC2_HELD_OUT_PER_CLASS = 4, 1
# Variables a test never inherits from the process: another emulator's, a profile's.
FOREIGN_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "BREEDOPS_SERVICE_TOKEN", "BREEDOPS_IAM_AUDIT_FILE")
USER_DATA_ROOT_TF = PROVIDER_TF + """
variable "training" {
  type = any
}

module "training_instance" {
  source = "../terraform/modules/training_instance"

  create      = false
  name_prefix = "%(name_prefix)s"
  training    = var.training
}

output "user_data" {
  value = module.training_instance.user_data
}
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{CHANGES_THE_PIPELINE}: re-applies or destroys the shared pipeline run; "
        "runs after every other test of tests/security")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within this package, the tests that change the deployment go last (stable order)."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in item.path.parents]
    ours = [items[i] for i in slots]
    ordered = ([t for t in ours if not t.get_closest_marker(CHANGES_THE_PIPELINE)]
               + [t for t in ours if t.get_closest_marker(CHANGES_THE_PIPELINE)])
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@dataclass
class AppliedPipeline:
    """The run: its sandbox, summary, Terraform outputs, audit, and how to reach its emulator."""

    root: Path
    options: Any  # PipelineOptions
    summary: dict[str, Any]
    outputs: dict[str, Any]
    audit_path: Path
    audit: list[dict[str, Any]]  # every decision up to the end of the run, not the tests'
    environment: dict[str, str]  # the admin's variables, the service token, sandbox and ports
    account: str
    roles: dict[str, str]  # operator, sagemaker, lambda, instance -> role ARN
    ec2_run: dict[str, Any] = field(default_factory=dict)  # the user data's exit, output tail

    @property
    def state(self) -> Path:
        return self.root / ".local"

    def admin(self, service: str) -> Any:
        """A client of the bootstrap admin (the account's owner) in the run's emulator."""
        return boto3.Session(
            aws_access_key_id=self.environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.environment["AWS_SECRET_ACCESS_KEY"],
            region_name=DEFAULT_REGION,
        ).client(service, endpoint_url=self.environment["AWS_ENDPOINT_URL"])

    def policies(self, role: str) -> list[dict[str, Any]]:
        """Every identity policy document of a role, as IAM holds it (attached and inline)."""
        iam = self.admin("iam")
        name = self.roles[role].rsplit("/", 1)[1]
        documents = []
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            documents.append(iam.get_policy_version(
                PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
                ["PolicyVersion"]["Document"])
        for inline in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            documents.append(iam.get_role_policy(RoleName=name,
                                                 PolicyName=inline)["PolicyDocument"])
        return [json.loads(d) if isinstance(d, str) else d for d in documents]


def _clean_environment(mp: pytest.MonkeyPatch, root: Path) -> None:
    for name in FOREIGN_VARIABLES:
        mp.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            mp.delenv(name)
    mp.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
    mp.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
    mp.setenv("AWS_REGION", DEFAULT_REGION)
    mp.setattr(boto3, "DEFAULT_SESSION", None)


def _pipeline_environment(state: Path) -> dict[str, str]:
    """What a test needs to act in the run's account: the env file and the service token."""
    from breedops.local import emulator
    from breedops.local.credentials import SERVICE_TOKEN_VARIABLE
    from breedops.local.env_file import ENV_FILE_NAME, read_env_file

    secrets = emulator.emulator_credentials(emulator.emulator_service(state=state))
    return {**read_env_file(state / ENV_FILE_NAME), SERVICE_TOKEN_VARIABLE: secrets.service_token}


def _state_document(root: Path, name: str) -> str:
    """The JSON of the iam module's policy document `name`, as this run's state holds it."""
    # Where the driver keeps the local state (`breedops.terraform.driver.backend_args`).
    state = json.loads((root / ".local" / "terraform" / "local.tfstate").read_text())
    for resource in state["resources"]:
        if (resource["mode"] == "data" and resource["type"] == "aws_iam_policy_document"
                and resource["name"] == name and resource.get("module", "").endswith(
                    "module.iam")):
            return resource["instances"][0]["attributes"]["json"]
    raise LookupError(f"no data.aws_iam_policy_document.{name} in the state")


def _create_instance_role(admin: boto3.Session, name_prefix: str, root: Path) -> str:
    """The training instance role as the iam module declares it (local `make apply` creates
    no instance, so no profile): its trust and policy, rendered in this run's state."""
    iam = admin.client("iam")
    name = f"{name_prefix}-training-instance"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_state_document(
        root, "ec2_assume"))["Role"]["Arn"]
    policy = iam.create_policy(PolicyName=name, PolicyDocument=_state_document(
        root, "training_instance"))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn=policy)
    return arn


def _render_user_data(root: Path, name_prefix: str, training: dict[str, Any]) -> str:
    """The user data, rendered by the training_instance module itself (create = false), in a
    root outside terraform/ (whose sources the pipeline's ledger fingerprints)."""
    from breedops.terraform.runner import run, run_json

    tf_root = root / "ec2-user-data"
    tf_root.mkdir()
    (tf_root / "main.tf").write_text(USER_DATA_ROOT_TF % {"region": DEFAULT_REGION,
                                                          "name_prefix": name_prefix})
    (tf_root / "terraform.tfvars.json").write_text(json.dumps({"training": training}))
    run(tf_root, "init", "-input=false", "-no-color", capture=True)
    run(tf_root, "apply", "-input=false", "-no-color", "-auto-approve", capture=True)
    return run_json(tf_root, "output", "-json")["user_data"]["value"]


def _take_the_ec2_path(root: Path, outputs: dict[str, Any], dataset: Path,
                       admin: boto3.Session) -> tuple[str, dict[str, Any]]:
    from breedops.data.upload import upload_dataset
    from breedops.local.service_roles import EC2_PRINCIPAL, assume_over_http

    name_prefix = outputs["name_prefix"]
    role_arn = _create_instance_role(admin, name_prefix, root)
    upload_dataset(dataset, outputs["bucket_name"], dataset.name, s3=admin.client("s3"))
    script = _render_user_data(root, name_prefix, {
        "bucket_name": outputs["bucket_name"], "job_name": EC2_JOB, "dataset": dataset.name,
        "hyperparameters": HYPERPARAMETERS,
        "python_activate": PYTHON_ACTIVATE})
    account = role_arn.split(":")[4]
    credentials = assume_over_http(
        role_arn, EC2_PRINCIPAL, INSTANCE_ID,
        source_arn=f"arn:aws:ec2:{DEFAULT_REGION}:{account}:instance/{INSTANCE_ID}")
    workdir = root / "ec2-instance"
    workdir.mkdir()
    result = run_user_data(script, credentials, workdir)
    if result.returncode != 0 or result.shutdown_calls != ["-h now"]:
        raise AssertionError(f"the EC2 user data failed as the instance role:\n"
                             f"{result.output[-4000:]}")
    return role_arn, {"returncode": result.returncode, "output": result.output[-2000:],
                      "shutdown_calls": result.shutdown_calls}


@contextmanager
def _denials_named_on_failure(what: str, audit_path: Path) -> Iterator[None]:
    """A failure of `what` comes with every denial the emulator recorded, each naming its
    principal and action: a policy that lacks a statement shows which."""
    from breedops.local.implied_actions import read_audit

    try:
        yield
    except Exception as e:
        grouped: dict[tuple[str, str], list[str]] = {}
        for r in read_audit(audit_path):
            if not r["allowed"]:
                grouped.setdefault((r["principal"], r["action"]), []).append(r["resource"])
        denials = [f"  {principal} is not authorized to perform: {action} on resource: "
                   f"{resources[0]}" + (f" (and {len(resources) - 1} more)"
                                        if len(resources) > 1 else "")
                   for (principal, action), resources in grouped.items()]
        raise AssertionError(f"{what} failed: {e}\nAccessDenied by the emulator so far:\n"
                             + "\n".join(denials or ["  none"])) from e


@pytest.fixture(scope="package")
def applied_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppliedPipeline]:
    from breedops.local import emulator
    from breedops.local.implied_actions import read_audit
    from breedops.local.services import free_port
    from breedops.pipeline.apply import PipelineOptions, apply
    from breedops.serving.lambda_package import build_lambda_zip
    from breedops.terraform import driver

    root = tmp_path_factory.mktemp("applied-pipeline")
    make_sandbox(root, lambda path: build_lambda_zip(target=path))
    scratch = tmp_path_factory.mktemp("digits")
    dataset = small_digits(scratch / "digits-small", scratch / "digits-full",
                           TRAIN_PER_CLASS, HELD_OUT_PER_CLASS)
    ec2_dataset = small_digits(scratch / "digits-ec2", scratch / "digits-full",
                               EC2_TRAIN_PER_CLASS, EC2_HELD_OUT_PER_CLASS)
    options = PipelineOptions(dataset=str(dataset), trials=TRIALS, parallel_trials=TRIALS,
                              epochs=EPOCHS)
    state = root / ".local"
    saved = dict(os.environ)  # the pipeline points os.environ at its emulator
    try:
        with pytest.MonkeyPatch.context() as mp:
            _clean_environment(mp, root)
            sandbox = {"BREEDOPS_ROOT": str(root), "BREEDOPS_STATE_DIR": str(state),
                       "BREEDOPS_EMULATOR_PORT": str(free_port()),
                       "BREEDOPS_HOSTING_PORT": str(free_port())}
            for name, value in sandbox.items():
                mp.setenv(name, value)

            audit_path = state / "emulator" / "iam-audit.jsonl"
            with _denials_named_on_failure("the pipeline run", audit_path):
                summary = apply(options, out=io.StringIO())

            environment = {**_pipeline_environment(state), **sandbox}
            os.environ.update(environment)
            boto3.DEFAULT_SESSION = None
            outputs = driver.outputs(ENV, initialised=True)
            admin = boto3.Session(region_name=DEFAULT_REGION)
            with _denials_named_on_failure("the EC2 path", audit_path):
                instance_role, ec2_run = _take_the_ec2_path(root, outputs, ec2_dataset, admin)
            account = outputs["sagemaker_execution_role_arn"].split(":")[4]
            role = f"arn:aws:iam::{account}:role/{outputs['name_prefix']}"
            applied = AppliedPipeline(
                root=root, options=options, summary=summary, outputs=outputs,
                audit_path=audit_path, audit=read_audit(audit_path), environment=environment,
                account=account, ec2_run=ec2_run,
                roles={"operator": outputs["operator_role_arn"],
                       "sagemaker": outputs["sagemaker_execution_role_arn"],
                       "lambda": f"{role}-inference-lambda", "instance": instance_role})
            os.environ.clear()
            os.environ.update(saved)
        yield applied
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None
        emulator.down(state)


@pytest.fixture
def pipeline_env(applied_pipeline: AppliedPipeline,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[AppliedPipeline]:
    """This test's AWS clients act in the run's account, as its bootstrap admin."""
    _clean_environment(monkeypatch, applied_pipeline.root)
    for name, value in applied_pipeline.environment.items():
        monkeypatch.setenv(name, value)
    saved = dict(os.environ)  # a re-apply points os.environ at the emulator again
    try:
        yield applied_pipeline
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None


@dataclass(frozen=True)
class Principal:
    """A role's own credentials, as its user gets them, and the ARN its calls are made as."""

    name: str
    arn: str
    session: boto3.Session

    def client(self, service: str) -> Any:
        return self.session.client(service)


SESSION_NAME = "security-tests"


def _session(credentials: dict[str, Any]) -> boto3.Session:
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"],
                         region_name=DEFAULT_REGION)


@pytest.fixture(scope="package")
def principals(applied_pipeline: AppliedPipeline) -> dict[str, Principal]:
    """Each role with its own credentials: the operator assumed by the admin (as the pipeline
    does), the others as their AWS service assumes them for a source in the account."""
    from breedops.local.service_roles import (
        EC2_PRINCIPAL,
        LAMBDA_PRINCIPAL,
        SAGEMAKER_PRINCIPAL,
        assume_over_http,
    )

    applied = applied_pipeline
    arn = f"arn:aws:{{}}:{DEFAULT_REGION}:{applied.account}:{{}}"
    prefix = applied.outputs["name_prefix"]
    services = {
        "sagemaker": (SAGEMAKER_PRINCIPAL, SESSION_NAME,
                      arn.format("sagemaker", f"training-job/{prefix}-security")),
        "lambda": (LAMBDA_PRINCIPAL, SESSION_NAME,
                   arn.format("lambda", f"function:{applied.outputs['lambda_function_name']}")),
        "instance": (EC2_PRINCIPAL, INSTANCE_ID, arn.format("ec2", f"instance/{INSTANCE_ID}")),
    }
    found = {}
    with pytest.MonkeyPatch.context() as mp:
        _clean_environment(mp, applied.root)
        for name, value in applied.environment.items():
            mp.setenv(name, value)
        assumed = applied.admin("sts").assume_role(
            RoleArn=applied.roles["operator"], RoleSessionName=SESSION_NAME)
        found["operator"] = Principal("operator", assumed["AssumedRoleUser"]["Arn"],
                                      _session(assumed["Credentials"]))
        for name, (service, session_name, source) in services.items():
            role = applied.roles[name]
            credentials = assume_over_http(role, service, session_name, source_arn=source)
            role_name = role.rsplit("/", 1)[1]
            found[name] = Principal(
                name, f"arn:aws:sts::{applied.account}:assumed-role/{role_name}/{session_name}",
                _session(credentials))
    return found
