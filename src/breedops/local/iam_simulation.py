"""IAM `SimulatePrincipalPolicy` for moto 5.2, which lacks it, added to moto in place.

The SageMaker Python SDK v3 validates an execution role with this call before it submits a
training or tuning job. The simulation evaluates the principal's identity-based policies
(inline and attached managed) the way IAM does for the common cases: an explicit `Deny`
wins, then an `Allow`, else an implicit deny; `Action`/`NotAction` and `Resource`/
`NotResource` with `*` and `?` wildcards. Statements with a `Condition` are not applied (their
context is unknown), which reports `implicitDeny` rather than guessing an `allowed`.
`apply()` is idempotent and must run before the server handles its first request.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from moto.core.responses import ActionResult
from moto.iam.exceptions import NotFoundException
from moto.iam.responses import IamResponse


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _matches(patterns: list[str], value: str, case_sensitive: bool) -> bool:
    if not case_sensitive:  # action names are case-insensitive, ARNs are not
        return any(fnmatchcase(value.lower(), p.lower()) for p in patterns)
    return any(fnmatchcase(value, p) for p in patterns)


def statement_applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    """Whether a statement (without conditions) covers `action` on `resource`."""
    if "Condition" in statement:
        return False
    if "Action" in statement:
        action_ok = _matches(_as_list(statement["Action"]), action, case_sensitive=False)
    else:
        action_ok = not _matches(_as_list(statement.get("NotAction")), action, False)
    if "Resource" in statement:
        resource_ok = _matches(_as_list(statement["Resource"]), resource, case_sensitive=True)
    else:
        resource_ok = not _matches(_as_list(statement.get("NotResource")), resource, True)
    return action_ok and resource_ok


def evaluate(policies: list[tuple[str, str, dict[str, Any]]], action: str,
             resource: str) -> dict[str, Any]:
    """One EvaluationResult for `(policy id, policy type, document)` policies."""
    allowed, denied = [], []
    for policy_id, policy_type, document in policies:
        for statement in _as_list_of_statements(document.get("Statement")):
            if statement_applies(statement, action, resource):
                matched = {"SourcePolicyId": policy_id, "SourcePolicyType": policy_type}
                (denied if statement.get("Effect") == "Deny" else allowed).append(matched)
    decision = "explicitDeny" if denied else "allowed" if allowed else "implicitDeny"
    return {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision,
            "MatchedStatements": denied or allowed, "MissingContextValues": []}


def _as_list_of_statements(value: Any) -> list[dict[str, Any]]:
    return [value] if isinstance(value, dict) else list(value or [])


def _document(raw: str | dict) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else json.loads(unquote(raw))


def principal_policies(backend: Any, arn: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The identity-based policies of a role or user, by ARN."""
    kind, _, name = arn.split(":", 5)[-1].partition("/")
    name = name.rsplit("/", 1)[-1]
    if kind == "role":
        principal = backend.get_role_by_arn(arn)
    elif kind == "user":
        principal = backend.get_user(name)
    else:
        raise NotFoundException(f"PolicySourceArn {arn} is not a role or a user")
    policies = [(policy_name, "IAM Policy", _document(doc))
                for policy_name, doc in principal.policies.items()]
    for policy in principal.managed_policies.values():
        version = next(v for v in policy.versions if v.is_default)
        policies.append((policy.name, "IAM Policy", _document(version.document)))
    return policies


def simulate_principal_policy(self: IamResponse) -> ActionResult:
    """The `SimulatePrincipalPolicy` response method."""
    arn = self._get_param("PolicySourceArn")
    actions = self._get_param("ActionNames", [])
    resources = self._get_param("ResourceArns") or ["*"]
    policies = principal_policies(self.backend, arn)  # NoSuchEntity for an unknown principal
    results = [evaluate(policies, action, resource)
               for action in actions for resource in resources]
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


def apply() -> None:
    """Add the action to moto's IAM responses (idempotent)."""
    IamResponse.simulate_principal_policy = simulate_principal_policy
