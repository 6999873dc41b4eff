"""The deployer's documented policy allows every call Terraform makes, as the emulator saw them.

One `terraform apply` of the local env (base and serving in one go, with a stand-in artifact) in
a sandbox with its own emulator, as the emulator's bootstrap admin: the local deployer. The
emulator writes every IAM decision to `<state>/emulator/iam-audit.jsonl`; each of the admin's
must be allowed by the deployer's documents (`docs/deployer-plan-policy.json` plus
`docs/deployer-policy.json`) and each read by the plan document alone, as
`breedops.local.iam_enforcement.is_allowed` evaluates them, resources as recorded.

Where the emulator records less than AWS authorizes on, the gap is named here instead of
widening the policy to fit it:

- `MOTO_ACTION_NAMES`: moto's S3 action names that are not IAM's;
- `RECORDED_WITHOUT_RESOURCE`: actions moto checks against `*` although AWS authorizes them on
  a named resource: they must be granted on the project's names or resources tagged with it;
- `UNRECORDED_CONDITION_KEYS`: condition keys the emulator neither records nor checks (the
  resource tags, the attached policy's ARN, ...): those conditions are taken as met.
  `iam:PassedToService`, which it records, is checked;
- `PROBES`: calls Terraform makes and carries on without when they are denied.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import make_sandbox

from breedops.local import emulator, iam_enforcement
from breedops.local.credentials import ADMIN_USER
from breedops.local.implied_actions import AUDIT_FILE_VARIABLE, read_audit
from breedops.settings import DEFAULT_REGION, project_root

ACCOUNT = "123456789012"
PREFIX = "breedops-local"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:user/{ADMIN_USER}"
DOCS = project_root() / "docs"
PLAN_POLICY = DOCS / "deployer-plan-policy.json"
APPLY_POLICY = DOCS / "deployer-policy.json"
TRAINING_INSTANCE_POLICY = DOCS / "deployer-training-instance-policy.json"
POLICIES = (PLAN_POLICY, APPLY_POLICY, TRAINING_INSTANCE_POLICY)
MANAGED_POLICY_LIMIT = 6144  # characters, whitespace not counted
# moto's name -> IAM's. (moto also names the S3 subresources it has no entry for, such as
# ?encryption and ?ownershipControls, CreateBucket when written and ListBucket when read.)
MOTO_ACTION_NAMES = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
RECORDED_WITHOUT_RESOURCE = {
    "iam:CreateRole", "iam:CreatePolicy", "iam:GetPolicy", "iam:GetPolicyVersion",
    "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:ListPolicyVersions",
    "iam:DeletePolicy", "iam:CreateInstanceProfile", "iam:GetInstanceProfile",
    "iam:DeleteInstanceProfile", "kms:DeleteAlias",
    # moto checks no EC2 or Application Auto Scaling call against a resource
    "ec2:RunInstances", "ec2:CreateSecurityGroup", "ec2:ModifyInstanceAttribute",
    "ec2:TerminateInstances", "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupEgress", "ec2:DeleteSecurityGroup", "ec2:DescribeInstanceAttribute",
    "ec2:DescribeVpcAttribute", "ec2:GetInstanceUefiData",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget", "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:DeleteScalingPolicy", "application-autoscaling:ListTagsForResource",
    "application-autoscaling:TagResource", "application-autoscaling:UntagResource",
}
# Resources AWS names by generated ids only: granted on any of their kind.
UNNAMED_RESOURCES = (":scalable-target/*",)
UNRECORDED_CONDITION_KEYS = {
    "aws:ResourceTag/Project", "aws:RequestTag/Project", "iam:PolicyARN",
    "kms:GrantIsForAWSResource", "kms:ViaService", "ec2:CreateAction", "iam:AWSServiceName",
}
# The provider looks up the account id with iam:GetUser first and falls back to
# sts:GetCallerIdentity (which needs no permission); a role's credentials fail it anyway.
PROBES = {"iam:GetUser"}
READ_VERBS = ("Get", "List", "Describe")
# A launch also authorizes on what the instance (or group) uses; the instance (group) itself is
# granted only with the project's tag in the request (LaunchTaggedTrainingInstance,
# CreateTaggedSecurityGroup).
LAUNCH_COMPANIONS = {"LaunchWithVolumeAndNetwork", "CreateSecurityGroupInVpc"}
ARTIFACT = {"model_artifact": {
    "model_data_url": f"s3://{PREFIX}-data-{ACCOUNT}/jobs/train-001/output/model.tar.gz",
    "training_job_name": "train-001",
    "training_job_arn": f"arn:aws:sagemaker:{DEFAULT_REGION}:{ACCOUNT}:training-job/train-001",
}}


def emulated(test):
    """The marks of a test that applies Terraform in its own emulator."""
    return pytest.mark.emulator(pytest.mark.terraform(pytest.mark.slow(test)))


def _document(path: Path) -> dict:
    return json.loads(path.read_text())


def _statements(*paths: Path) -> list[dict]:
    return [s for path in paths for s in _document(path)["Statement"]]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _without_unrecorded_conditions(document: dict) -> dict:
    """The document with every condition on a key the emulator does not record dropped."""
    statements = []
    for statement in document["Statement"]:
        statement = dict(statement)
        condition = {operator: {k: v for k, v in keys.items()
                                if k not in UNRECORDED_CONDITION_KEYS}
                     for operator, keys in statement.pop("Condition", {}).items()}
        condition = {operator: keys for operator, keys in condition.items() if keys}
        if condition:
            statement["Condition"] = condition
        statements.append(statement)
    return {**document, "Statement": statements}


def _allowed(paths: tuple[Path, ...], decision: dict) -> bool:
    """Whether the documents at `paths` allow the recorded `decision`."""
    documents = [_without_unrecorded_conditions(_document(p)) for p in paths]
    action = MOTO_ACTION_NAMES.get(decision["action"], decision["action"])
    resources = [decision["resource"]]
    if decision["resource"] == "*" and action in RECORDED_WITHOUT_RESOURCE:
        resources = [r for d in documents for s in d["Statement"] if action in s["Action"]
                     for r in _as_list(s["Resource"])]
    return any(iam_enforcement.is_allowed(documents, action, resource, decision["context"])
               for resource in resources)


@pytest.fixture(scope="module")
def admin_decisions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict]]:
    """The admin's IAM decisions during one apply of the local env (base and serving)."""
    from breedops.terraform import driver

    root = make_sandbox(tmp_path_factory.mktemp("deployer"))
    (root / "terraform" / "envs" / "local" / "artifacts.auto.tfvars.json").write_text(
        json.dumps(ARTIFACT))
    state = root / ".local"
    audit = state / "emulator" / "iam-audit.jsonl"
    service = emulator.emulator_service(port=emulator.free_port(), state=state)
    service = dataclasses.replace(service, env={**service.env, AUDIT_FILE_VARIABLE: str(audit)})
    running = emulator.start_service(service, state)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                         "AWS_SECURITY_TOKEN", "TF_LOG", "TF_LOG_PATH"):
                mp.delenv(name, raising=False)
            for name, value in {**emulator.emulator_credentials(service).admin_environment(),
                                "AWS_ENDPOINT_URL": running.url,
                                "AWS_DEFAULT_REGION": DEFAULT_REGION,
                                "AWS_REGION": DEFAULT_REGION,
                                "AWS_CONFIG_FILE": str(root / "no-aws-config"),
                                "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
                                "BREEDOPS_ROOT": str(root),
                                "BREEDOPS_STATE_DIR": str(state)}.items():
                mp.setenv(name, value)
            driver.apply("local")
        yield [d for d in read_audit(audit) if d["principal"] == ADMIN_ARN]
    finally:
        emulator.stop_service(service, state)


@emulated
def test_the_apply_made_the_calls_that_matter(admin_decisions: list[dict]) -> None:
    """Guard against a vacuous pass: the audit holds the apply's creates."""
    actions = {d["action"] for d in admin_decisions}
    assert {"iam:CreateRole", "kms:CreateKey", "s3:CreateBucket", "sagemaker:CreateEndpoint",
            "lambda:CreateFunction", "application-autoscaling:RegisterScalableTarget",
            "lambda:PutProvisionedConcurrencyConfig", "iam:PassRole"} <= actions


@emulated
def test_the_deployer_policy_allows_every_call_of_the_apply(admin_decisions: list[dict]) -> None:
    denied = sorted({f"{d['action']} on {d['resource']} {d['context'] or ''}".strip()
                     for d in admin_decisions if d["action"] not in PROBES
                     and not _allowed((PLAN_POLICY, APPLY_POLICY), d)})
    assert not denied, "the deployer's policy does not allow:\n" + "\n".join(denied)


@emulated
def test_the_plan_policy_allows_every_read_of_the_apply(admin_decisions: list[dict]) -> None:
    """`terraform plan` refreshes with the reads an apply makes after each create."""
    reads = [d for d in admin_decisions if d["action"] not in PROBES and
             MOTO_ACTION_NAMES.get(d["action"], d["action"]).split(":")[1].startswith(READ_VERBS)]
    assert reads
    denied = sorted({f"{d['action']} on {d['resource']}" for d in reads
                     if not _allowed((PLAN_POLICY,), d)})
    assert not denied, "the plan policy does not allow:\n" + "\n".join(denied)


def test_the_plan_policy_only_reads_but_for_the_state_lock() -> None:
    for statement in _statements(PLAN_POLICY):
        if statement["Sid"] == "TerraformStateLock":
            assert all(r.endswith(".tflock") for r in _as_list(statement["Resource"]))
            continue
        writes = [a for a in statement["Action"] if not a.split(":")[1].startswith(READ_VERBS)]
        assert not writes, f"{statement['Sid']} writes: {writes}"


def test_every_statement_is_explained_and_fits_a_managed_policy() -> None:
    explained = (DOCS / "DEPLOYER.md").read_text()
    sids = [s["Sid"] for s in _statements(*POLICIES)]
    assert len(sids) == len(set(sids)), "statement ids must be unique across the documents"
    for sid in sids:
        assert re.search(rf"`{sid}`", explained), f"docs/DEPLOYER.md does not explain {sid}"
    for path in POLICIES:
        compact = json.dumps(_document(path), separators=(",", ":"))
        assert len(compact) <= MANAGED_POLICY_LIMIT, f"{path.name} exceeds a managed policy"


def test_no_action_is_a_wildcard_and_unrecorded_resources_are_scoped() -> None:
    """No wildcard actions; where the emulator records no resource, the statements that write
    are scoped by the project's names or its tag (the emulator's decisions cannot show it)."""
    for statement in _statements(*POLICIES):
        assert statement["Effect"] == "Allow"
        assert not any("*" in a for a in statement["Action"]), statement["Sid"]
        tagged = "Tag/Project" in json.dumps(statement.get("Condition", {}))
        writes = {a for a in statement["Action"] if not a.split(":")[1].startswith(READ_VERBS)}
        if not writes & RECORDED_WITHOUT_RESOURCE or tagged:
            continue
        if statement["Sid"] in LAUNCH_COMPANIONS:
            assert set(statement["Action"]) <= {"ec2:RunInstances", "ec2:CreateSecurityGroup"}
            continue
        assert all("breedops-" in r or r.endswith(UNNAMED_RESOURCES)
                   for r in _as_list(statement["Resource"])), statement["Sid"]
