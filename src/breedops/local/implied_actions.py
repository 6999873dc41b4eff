"""The permissions AWS checks besides a request's own action, and the audit of every decision.

AWS authorizes more than the action a request names: `CreateTrainingJob` also needs
`iam:PassRole` on the role it hands to SageMaker (with `iam:PassedToService`), and an S3 read
or write of an SSE-KMS object needs `kms:Decrypt` / `kms:GenerateDataKey` on its key, which S3
asks KMS for as the caller (`kms:ViaService` = `s3.<region>.amazonaws.com`). moto checks none of
these, so a policy missing them passes locally and fails on AWS. `implied()` lists them for a
request; `iam_enforcement` checks each against the caller's policies after the request's own.

`record()` appends every decision (principal, action, resource, context, allowed) to the
emulator's audit file: the deny-matrix tests read what a real `make apply` asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIT_FILE_VARIABLE = "BREEDOPS_IAM_AUDIT_FILE"
# The request parameter that names the role a call passes to a service.
PASSED_ROLES = {
    "sagemaker:CreateTrainingJob": (("RoleArn",), "sagemaker.amazonaws.com"),
    "sagemaker:CreateHyperParameterTuningJob": (("TrainingJobDefinition", "RoleArn"),
                                                "sagemaker.amazonaws.com"),
    "sagemaker:CreateModel": (("ExecutionRoleArn",), "sagemaker.amazonaws.com"),
    "lambda:CreateFunction": (("Role",), "lambda.amazonaws.com"),
    "lambda:UpdateFunctionConfiguration": (("Role",), "lambda.amazonaws.com"),
}
# The KMS action S3 asks for, as the caller, when it reads or writes an SSE-KMS object.
KMS_THROUGH_S3 = {"s3:PutObject": "kms:GenerateDataKey", "s3:GetObject": "kms:Decrypt"}


@dataclass(frozen=True)
class Check:
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def implied(action: str, resource: str, params: dict[str, Any], headers: Any,
            account: str, region: str) -> list[Check]:
    """The further checks AWS makes for a request allowed `action` on `resource`."""
    checks = []
    if action in PASSED_ROLES:
        path, service = PASSED_ROLES[action]
        value: Any = params
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            checks.append(Check("iam:PassRole", value, {"iam:PassedToService": service}))
    if action in KMS_THROUGH_S3 and resource.startswith("arn:aws:s3:::") and "/" in resource:
        key = _object_key(action, resource.removeprefix("arn:aws:s3:::"), headers, account)
        if key:
            checks.append(Check(KMS_THROUGH_S3[action], _key_arn(key, account, region),
                                {"kms:ViaService": f"s3.{region}.amazonaws.com",
                                 "kms:CallerAccount": account}))
    return checks


def _object_key(action: str, path: str, headers: Any, account: str) -> str | None:
    """The KMS key that encrypts (or will encrypt) the object at `bucket/key`, if any."""
    from moto.s3.models import s3_backends

    bucket_name, _, key_name = path.partition("/")
    store = s3_backends[account]["aws"]
    try:
        bucket = store.get_bucket(bucket_name)
    except Exception:  # noqa: BLE001 - a missing bucket is the request's own error to report
        return None
    if action == "s3:GetObject":
        obj = bucket.keys.get(key_name) if hasattr(bucket.keys, "get") else None
        if obj is not None and getattr(obj, "encryption", None) == "aws:kms":
            return obj.kms_key_id or None
        return None
    if (headers or {}).get("x-amz-server-side-encryption") == "aws:kms":
        return headers.get("x-amz-server-side-encryption-aws-kms-key-id") or None
    rules = (bucket.encryption or {}).get("Rule") or []
    for rule in rules if isinstance(rules, list) else [rules]:  # one rule parses as a dict
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        if default.get("SSEAlgorithm") == "aws:kms":
            return default.get("KMSMasterKeyID") or None
    return None


def _key_arn(key: str, account: str, region: str) -> str:
    if key.startswith("arn:"):
        return key
    from moto.kms.models import kms_backends

    with contextlib.suppress(Exception):  # an alias that resolves nowhere stays as given
        key = kms_backends[account][region].any_id_to_key_id(key)
    return f"arn:aws:kms:{region}:{account}:key/{key}"


# -- the audit --------------------------------------------------------------------------------

_lock = threading.Lock()
_seen: set[str] = set()


def audit_file() -> Path | None:
    value = os.environ.get(AUDIT_FILE_VARIABLE)
    return Path(value) if value else None


def record(principal: str, action: str, resource: str, context: dict[str, str],
           allowed: bool) -> None:
    """Append one decision to the audit file (each distinct decision once)."""
    path = audit_file()
    if path is None:
        return
    line = json.dumps({"principal": principal, "action": action, "resource": resource,
                       "context": context, "allowed": allowed}, sort_keys=True)
    with _lock:
        if line in _seen:
            return
        _seen.add(line)
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def read_audit(path: Path) -> list[dict[str, Any]]:
    """The decisions an audit file holds."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
