"""Make the emulator's IAM enforcement check the resources and conditions we scope policies by.

moto enforces identity policies once `INITIAL_NO_AUTH_ACTION_COUNT` requests have passed, but
it matches `Resource` only for S3, IAM, STS and SQS: every other call is checked against `*`,
so a statement scoped to an endpoint ARN denies a call that AWS allows. And it reads every
`Condition` of an identity policy as failed, which turns an `Allow` with a condition into an
explicit deny. `apply()` fixes these and three smaller gaps, in place:

- SageMaker, Lambda, CloudWatch Logs and KMS requests are checked against the ARN of the
  resource they name (`_determine_resource`, the hook moto's own IAM and SQS responses use);
- conditions of identity policies are evaluated against the request's context keys
  (`s3:prefix`, `cloudwatch:namespace`): a statement whose condition fails does not apply,
  as on AWS. A key the request does not carry fails the condition;
- actions are named with IAM's prefix (`cloudwatch:`, where moto says `monitoring:`);
- a trust policy's service principal no longer crashes `AssumeRole` by an IAM principal;
- a bodyless GET is signed over its empty body (moto signs its parsed parameters instead).

The server calls `apply()` only when enforcement is on. `is_allowed()` evaluates a principal's
policies the same way for calls the emulator does not serve (SageMaker Runtime's
`InvokeEndpoint` goes to local hosting).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from breedops.local import implied_actions

ENFORCEMENT_VARIABLE = "INITIAL_NO_AUTH_ACTION_COUNT"
# Request parameters whose name gives the SageMaker resource, in the order that decides it.
SAGEMAKER_NAME_PARAMETERS = (
    ("HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
    ("TrainingJobName", "training-job"),
    ("EndpointName", "endpoint"),
    ("EndpointConfigName", "endpoint-config"),
    ("ModelName", "model"),
)
# IAM's action prefix where it differs from the service name a request is signed for.
ACTION_PREFIXES = {"monitoring": "cloudwatch"}
# IAM's action name where it differs from the operation's (moto names the action after it).
ACTION_NAMES = {"lambda:Invoke": "lambda:InvokeFunction",
                "lambda:InvokeWithResponseStream": "lambda:InvokeFunction"}
# Condition keys a request carries in its query parameters.
CONTEXT_PARAMETERS = {"s3:prefix": "prefix"}
# A JSON-protocol request's parameters; an S3 object's bytes (an 8 MB part) are not parsed.
JSON_BODY = re.compile(rb"\s*[{]")

_request_context: ContextVar[dict[str, str] | None] = ContextVar("breedops_iam_context",
                                                                default=None)
# Context keys a response read from a body moto's IAM request cannot parse (CloudWatch's CBOR).
_response_context: ContextVar[dict[str, str] | None] = ContextVar("breedops_response_context",
                                                                 default=None)


def enabled() -> bool:
    """Whether moto will enforce IAM (the variable is set to a finite count)."""
    return os.environ.get(ENFORCEMENT_VARIABLE, "").strip().isdigit()


def arn_of(response: Any, service: str, resource: str) -> str:
    """The ARN of `resource` of `service` in the request's account and region."""
    from moto.utilities.utils import get_partition

    partition = get_partition(response.region)
    return f"arn:{partition}:{service}:{response.region}:{response.current_account}:{resource}"


def _params(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def sagemaker_resource(response: Any) -> str:
    """The ARN a SageMaker request acts on; SageMaker lowercases names in its ARNs."""
    params = _params(response)
    if "ResourceArn" in params:
        return params["ResourceArn"]
    for parameter, kind in SAGEMAKER_NAME_PARAMETERS:
        if parameter in params:
            return arn_of(response, "sagemaker", f"{kind}/{params[parameter].lower()}")
    return "*"


def lambda_resource(response: Any) -> str:
    """The function a Lambda request acts on (its name is in the path, or the body on create).

    With a `Qualifier` the resource is the qualified ARN (`function:name:live`), as on AWS: a
    policy on `function:name` does not cover it, `function:name:*` does.
    """
    match = re.search(r"/functions/([^/?]+)", unquote(response.path))
    name = match.group(1) if match else _params(response).get("FunctionName")
    if not name:
        return "*"
    arn = name if name.startswith("arn:") else arn_of(response, "lambda", f"function:{name}")
    qualifier = (getattr(response, "querystring", None) or {}).get("Qualifier")
    qualifier = qualifier[0] if isinstance(qualifier, list) else qualifier
    if qualifier and arn.count(":") == 6:  # not qualified in the name already
        arn = f"{arn}:{qualifier}"
    return arn


def logs_resource(response: Any) -> str:
    """The log group, or the log stream inside it, a CloudWatch Logs request acts on."""
    params = _params(response)
    group = params.get("logGroupName") or params.get("logGroupIdentifier")
    if not group:
        return params.get("resourceArn", "*")
    if group.startswith("arn:"):
        return group
    stream = params.get("logStreamName")
    suffix = f":log-stream:{stream}" if stream else ""
    return arn_of(response, "logs", f"log-group:{group}{suffix}")


def kms_resource(response: Any) -> str:
    """The key a KMS request acts on: aliases and key ids resolve to the key's ARN."""
    from moto.kms.models import kms_backends

    key = _params(response).get("KeyId") or _params(response).get("TargetKeyId")
    if not key:
        return "*"
    try:
        key_id = kms_backends[response.current_account][response.region].any_id_to_key_id(key)
    except Exception:  # noqa: BLE001 - an unknown key is the backend's error to report
        return "*"
    return arn_of(response, "kms", f"key/{key_id}")


def cloudwatch_resource(response: Any) -> str:
    """PutMetricData has no resource type; note its namespace for the condition instead."""
    namespace = response._get_param("Namespace")
    _response_context.set({"cloudwatch:namespace": namespace} if namespace else {})
    return "*"


def conditions_hold(conditions: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    """Evaluate a Condition block against the request context (the operators we use)."""
    operators: dict[str, Callable[[str, list[str]], bool]] = {
        "StringEquals": lambda actual, expected: actual in expected,
        "StringNotEquals": lambda actual, expected: actual not in expected,
        "StringLike": lambda actual, expected: any(fnmatchcase(actual, e) for e in expected),
        "Bool": lambda actual, expected: actual.lower() in [e.lower() for e in expected],
        "ArnEquals": lambda actual, expected: actual in expected,
        "ArnLike": lambda actual, expected: any(fnmatchcase(actual, e) for e in expected),
    }
    for operator, keys in conditions.items():
        check = operators.get(operator)
        for key, expected in keys.items():
            actual = context.get(key)
            values = [expected] if isinstance(expected, str) else [str(e) for e in expected]
            if check is None or actual is None or not check(actual, values):
                return False
    return True


def request_context(data: dict[str, Any]) -> dict[str, str]:
    """The condition keys a request carries, from its query or form parameters."""
    context = {}
    for key, parameter in CONTEXT_PARAMETERS.items():
        value = (data or {}).get(parameter)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            context[key] = str(value)
    return context


def apply() -> None:
    """Patch moto's responses and policy evaluation in place; idempotent."""
    from moto.awslambda.responses import LambdaResponse
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.kms.responses import KmsResponse
    from moto.logs.responses import LogsResponse
    from moto.sagemaker.responses import SageMakerResponse

    for cls, resolve in ((SageMakerResponse, sagemaker_resource),
                         (LambdaResponse, lambda_resource),
                         (LogsResponse, logs_resource),
                         (KmsResponse, kms_resource),
                         (CloudWatchResponse, cloudwatch_resource)):
        cls._determine_resource = resolve
    _evaluate_conditions()
    _sign_bodyless_requests()
    _deny_unsigned_requests()


def _deny_unsigned_requests() -> None:
    """An unsigned request is denied, as AWS denies it (moto fails on the missing header).

    S3 answers an anonymous request AccessDenied (no bucket here is public); the query and
    JSON protocols answer MissingAuthenticationToken.
    """
    from moto.core.exceptions import JsonRESTError, _RESTError
    from moto.iam.access_control import IAMRequestBase, S3IAMRequest
    from moto.s3.exceptions import S3AccessDeniedError

    if getattr(IAMRequestBase, "_breedops_unsigned", False):
        return
    original = IAMRequestBase.__init__

    def __init__(self: Any, account_id: str, method: str, path: str, data: Any, body: Any,
                 headers: Any, action: Any) -> None:
        if not headers.get("Authorization"):
            if isinstance(self, S3IAMRequest):
                raise S3AccessDeniedError()
            json_protocol = bool(headers.get("X-Amz-Target")) or "json" in str(
                headers.get("Content-Type", ""))
            error = (JsonRESTError("MissingAuthenticationTokenException",
                                   "Missing Authentication Token") if json_protocol else
                     _RESTError("MissingAuthenticationToken",
                                "Request is missing Authentication Token"))
            error.code = 403
            raise error
        original(self, account_id, method, path, data, body, headers, action)

    IAMRequestBase.__init__ = __init__
    IAMRequestBase._breedops_unsigned = True


def _sign_bodyless_requests() -> None:
    """Check a GET's signature over its empty body, as the client signed it.

    moto signs `body or data`: for a REST GET without a body (Lambda GetFunction, GetAlias) the
    parsed parameters stand in as a form body, so every such call fails with
    SignatureDoesNotMatch once enforcement is on.
    """
    from moto.iam.access_control import IAMRequestBase

    if getattr(IAMRequestBase, "_breedops_bodyless", False):
        return
    original = IAMRequestBase._create_aws_request

    def create_aws_request(self: Any) -> Any:
        content_type = str(self._headers.get("Content-Type") or "").lower()
        # So does a REST POST without a body (Lambda Invoke with no payload, DryRun); a form
        # POST's parameters are its body (werkzeug has parsed them out of it).
        rest_post = self._method == "POST" and "form-urlencoded" not in content_type
        if (self._method in ("GET", "HEAD", "DELETE") or rest_post) and not self._body:
            data, self._data = self._data, {}
            try:
                return original(self)
            finally:
                self._data = data
        return original(self)

    IAMRequestBase._create_aws_request = create_aws_request
    IAMRequestBase._breedops_bodyless = True


def _evaluate_conditions() -> None:
    """Evaluate identity-policy conditions against the request context; idempotent."""
    from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase, PermissionResult

    if getattr(IAMPolicyStatement, "_breedops_enforcement", False):
        return
    original_check = IAMRequestBase.check_action_permitted
    original_statement = IAMPolicyStatement.is_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        service, _, operation = self._action.partition(":")
        self._action = f"{ACTION_PREFIXES.get(service, service)}:{operation}"
        self._action = ACTION_NAMES.get(self._action, self._action)
        context = {**(_response_context.get() or {}), **request_context(self._data)}
        _response_context.set(None)
        principal = self._access_key.arn
        token = _request_context.set(context)
        try:
            try:
                original_check(self, resource)
            except Exception:
                implied_actions.record(principal, self._action, resource, context, False)
                raise
            if self._action != "sts:GetCallerIdentity":
                implied_actions.record(principal, self._action, resource, context, True)
            _check_implied(self, resource)
        finally:
            _request_context.reset(token)

    def is_action_permitted(self: Any, action: str, resource: str = "*",
                            principal: str | None = None,
                            incoming_condition_values: dict[str, str] | None = None) -> Any:
        conditions = self._statement.get("Condition")
        expected = self._statement.get("Principal")
        # In a trust policy, a service principal never names the calling user or role (moto
        # fails with a TypeError there, as it only reads `AWS` principals).
        if principal is not None and isinstance(expected, dict) and "AWS" not in expected:
            return PermissionResult.NEUTRAL
        # Trust policies (evaluated with a principal) keep moto's own condition handling.
        if not conditions or principal is not None:
            return original_statement(self, action, resource, principal,
                                      incoming_condition_values)
        if not conditions_hold(conditions, _request_context.get() or {}):
            return PermissionResult.NEUTRAL
        unconditional = {k: v for k, v in self._statement.items() if k != "Condition"}
        return original_statement(IAMPolicyStatement(unconditional), action, resource)

    IAMRequestBase.check_action_permitted = check_action_permitted
    IAMPolicyStatement.is_action_permitted = is_action_permitted
    IAMPolicyStatement._breedops_enforcement = True


def _check_implied(request: Any, resource: str) -> None:
    """What AWS checks besides the request's own action (PassRole, KMS through S3), each
    against the caller's policies; denied with AWS's message naming the implied action."""
    body = request._body or b"{}"
    try:
        params = json.loads(body) if not isinstance(body, (bytes, bytearray)) or \
            JSON_BODY.match(body) else {}
    except (TypeError, ValueError):
        params = {}
    if not isinstance(params, dict) or not params:
        params = {k: v[0] if isinstance(v, list) and v else v
                  for k, v in (request._data or {}).items()}
    headers = {k.lower(): v for k, v in dict(request._headers).items()}
    checks = implied_actions.implied(request._action, resource, params, headers,
                                     request.account_id, request._region)
    if not checks:
        return
    principal, policies = request._access_key.arn, request._access_key.collect_policies()
    for check in checks:
        allowed = is_allowed(policies, check.action, check.resource, check.context)
        implied_actions.record(principal, check.action, check.resource, check.context, allowed)
        if not allowed:
            request._action = check.action
            request._raise_access_denied()


def is_allowed(policies: list[Any], action: str, resource: str,
               context: dict[str, str] | None = None, principal: str | None = None) -> bool:
    """Whether identity `policies` allow `action` on `resource`, as the patched emulator decides.

    For calls the emulator makes on a principal's behalf (a job reading its channels) and the
    implied checks; with `principal`, the decision goes to the audit.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult

    _evaluate_conditions()
    token = _request_context.set(context or {})
    try:
        # A policy document as a dict, or what moto's collect_policies() gives (kept as is).
        results = [IAMPolicy(json.dumps(p) if isinstance(p, dict) and "Statement" in p else p)
                   .is_action_permitted(action, resource) for p in policies]
    finally:
        _request_context.reset(token)
    allowed = PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results
    if principal is not None:
        implied_actions.record(principal, action, resource, context or {}, allowed)
    return allowed
