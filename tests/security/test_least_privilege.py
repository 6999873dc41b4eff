"""Least privilege, proven from what a real pipeline run asked for.

The emulator writes every IAM decision it makes, implied ones included (iam:PassRole, KMS
through S3), to its audit (`breedops.local.implied_actions`). From the package's one real run
(`applied_pipeline`: `make apply` at reduced size, then the EC2 path's user data):

- every call was allowed, but for the SDK probes listed in EXPECTED_DENIALS, which are denied
  and handled;
- every statement of every role's policy is needed: without it, at least one call that the run
  made is denied (`iam_enforcement.is_allowed`, the emulator's own evaluation, on the policy as
  IAM holds it). So removing a statement from terraform/modules/iam makes the run fail with an
  AccessDenied naming that action (or, for a call the pipeline tolerates,
  `test_every_recorded_call_is_allowed` list it). Statements that no local call can need are
  listed in NOT_EXERCISED_LOCALLY, each with its reason, and checked to stay unneeded.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from breedops.local import iam_enforcement

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

ROLES = ("operator", "sagemaker", "lambda", "instance")

# (role, action, resource) denied in the real run, and why that is right.
EXPECTED_DENIALS = {
    ("operator", "iam:SimulatePrincipalPolicy", "*"):
        "the SageMaker SDK's ModelTrainer._resolve_staging_bucket asks IAM whether the "
        "execution role may write the SDK's default bucket; it catches the denial and stages "
        "under the job's own output path, which is what the pipeline configures anyway",
    ("operator", "s3:ListAllMyBuckets", "arn:aws:s3:::*"):
        "the SDK's default-bucket check reads boto3's Bucket.creation_date, which lists every "
        "bucket; boto3 treats AccessDenied there as 'unknown' and the SDK goes on to check the "
        "configured bucket by name",
}

# (role, Sid) that no call of a local run needs, and why the statement stays.
NOT_EXERCISED_LOCALLY = {
    ("sagemaker", "EcrAuthorizationToken"):
        "SageMaker pulls the framework training and inference images from ECR as the "
        "execution role on AWS; locally the emulator runs the job on this machine, no image",
    ("sagemaker", "PullFrameworkImages"):
        "the ECR layer pulls that follow the authorization token, on AWS only (as above)",
    ("sagemaker", "PutMetricsInSageMakerNamespaces"):
        "on AWS the training job publishes its metric_definitions values to CloudWatch "
        "metrics as the execution role; the emulator keeps them in the job's "
        "FinalMetricDataList and publishes none",
    ("lambda", "WriteXRayTraces"):
        "only in the policy with inference_lambda.tracing_enabled (off by default and "
        "locally): the Lambda service's X-Ray daemon sends the segments",
    ("instance", "SessionManagerChannels"):
        "the SSM agent of the Deep Learning AMI opens Session Manager channels (no SSH); no "
        "agent runs locally, the user data runs in bash",
    ("instance", "SessionManagerRegistration"):
        "the SSM agent registers the instance with Systems Manager, on AWS only (as above)",
}


def role_of(principal: str, roles: dict[str, str]) -> str | None:
    """The key of ROLES whose assumed-role sessions `principal` is, if any."""
    for key, arn in roles.items():
        if f":assumed-role/{arn.rsplit('/', 1)[1]}/" in principal:
            return key
    return None


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _actions(statement: dict[str, Any]) -> str:
    actions = statement.get("Action", [])
    return ", ".join([actions] if isinstance(actions, str) else actions)


def _calls(applied_pipeline, role: str) -> list[dict[str, Any]]:
    """The distinct (action, resource, context) the role was allowed in the run."""
    seen: dict[str, dict[str, Any]] = {}
    for record in applied_pipeline.audit:
        if record["allowed"] and role_of(record["principal"], applied_pipeline.roles) == role:
            call = {k: record[k] for k in ("action", "resource", "context")}
            seen.setdefault(json.dumps(call, sort_keys=True), call)
    return list(seen.values())


def _allowed(policies: list[dict[str, Any]], call: dict[str, Any]) -> bool:
    return iam_enforcement.is_allowed(policies, call["action"], call["resource"],
                                      call["context"])


def test_every_recorded_call_is_allowed(applied_pipeline):
    denied = [r for r in applied_pipeline.audit if not r["allowed"]]
    found = {(role_of(r["principal"], applied_pipeline.roles), r["action"], r["resource"])
             for r in denied}

    unexpected = [r for r in denied if (role_of(r["principal"], applied_pipeline.roles),
                                        r["action"], r["resource"]) not in EXPECTED_DENIALS]
    assert unexpected == [], "the real pipeline run was denied:\n" + "\n".join(
        f"  AccessDenied: {r['principal']} is not authorized to perform: {r['action']} on "
        f"resource: {r['resource']} (context {r['context']})" for r in unexpected)
    stale = sorted(set(EXPECTED_DENIALS) - found)
    assert stale == [], f"no longer denied, drop them from EXPECTED_DENIALS: {stale}"


def test_the_run_made_calls_as_every_role(applied_pipeline):
    assert len(applied_pipeline.audit) > 500  # the whole run: ~1300 distinct decisions
    missing = [role for role in ROLES if not _calls(applied_pipeline, role)]
    assert missing == [], f"no call of the run was made as {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_every_statement_is_needed_by_the_run(applied_pipeline, role):
    policies = applied_pipeline.policies(role)
    calls = _calls(applied_pipeline, role)

    # The documents as evaluated here allow what the emulator allowed during the run.
    assert [c for c in calls if not _allowed(policies, c)] == []
    problems, needed = [], {}
    for index, document in enumerate(policies):
        for statement in _statements(document):
            sid = statement.get("Sid")
            if not sid:
                problems.append(f"{role}: a statement without a Sid ({_actions(statement)})")
                continue
            without = copy.deepcopy(policies)
            without[index]["Statement"] = [s for s in _statements(document) if s is not statement]
            denied = [c for c in calls if not _allowed(without, c)]
            listed = NOT_EXERCISED_LOCALLY.get((role, sid))
            if listed and denied:
                problems.append(
                    f"{role}: {sid} is listed as not exercised locally, but without it the run "
                    f"is denied {denied[0]['action']} on {denied[0]['resource']}: unlist it")
            elif not listed and not denied:
                problems.append(
                    f"{role}: removing statement {sid} ({_actions(statement)}) denies no call "
                    "the pipeline made: drop it, or list it in NOT_EXERCISED_LOCALLY with why")
            elif denied:
                needed[sid] = sorted({c["action"] for c in denied})

    assert problems == [], "\n".join(problems)
    # What each statement is for, as the run shows it (visible with -rA or on failure above).
    print("\n".join(f"{role}: without {sid}, the run gets AccessDenied on {', '.join(actions)}"
                    for sid, actions in needed.items()))
