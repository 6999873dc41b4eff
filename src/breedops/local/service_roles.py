"""AWS services acting as the roles that trust them: SageMaker, Lambda, EC2, locally.

On AWS a job runs as its execution role because SageMaker assumes it, and only because the
role's trust policy names `sagemaker.amazonaws.com` (with the `aws:SourceAccount` and
`aws:SourceArn` conditions that prevent a confused deputy). The emulator's executors do the
same through `assume()`: the trust policy is evaluated for that service and that source, and
the credentials come from STS, so every call the job makes is checked against the role.

Processes outside the emulator that play a service (local hosting as SageMaker, a test as EC2)
reach the same function over HTTP, `POST /_breedops/service/<route>`, with the service token
that only the launcher hands out (`credentials.py`); `call_service` is their client.
"""

from __future__ import annotations

import hmac
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from breedops.local import authorization
from breedops.local.credentials import SERVICE_TOKEN_VARIABLE
from breedops.settings import DEFAULT_REGION

ROUTE_PREFIX = "/_breedops/service/"
TOKEN_HEADER = "X-Breedops-Service-Token"
SESSION_SECONDS = 12 * 3600  # how long a role session a service assumes lasts
ASSUME_ACTIONS = ("sts:AssumeRole", "sts:*", "*")
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
EC2_PRINCIPAL = "ec2.amazonaws.com"

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class ServiceRoleError(Exception):
    """The role cannot be assumed by that service (or the route was refused)."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def trusts(trust_policy: str | dict[str, Any], service: str, context: dict[str, str]) -> bool:
    """Whether a trust policy lets `service` assume the role, for a request with `context`
    (`aws:SourceAccount`, `aws:SourceArn`): an Allow whose conditions hold and no Deny."""
    from breedops.local.iam_enforcement import conditions_hold

    document = json.loads(trust_policy) if isinstance(trust_policy, str) else trust_policy
    allowed = False
    for statement in _as_list(document.get("Statement")):
        principal = statement.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
        if principal != "*" and service not in services:
            continue
        if not any(a in ASSUME_ACTIONS for a in _as_list(statement.get("Action"))):
            continue
        if not conditions_hold(statement.get("Condition") or {}, context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def assume(role_arn: str, service: str, session_name: str, source_arn: str | None = None,
           region: str = DEFAULT_REGION) -> dict[str, Any]:
    """Credentials of `role_arn` as `service` assumes it on behalf of `source_arn`.

    Raises ServiceRoleError when the role does not exist or does not trust the service (for
    that source), with the message the service reports on AWS.
    """
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    from breedops.local.sagemaker_jobs import records

    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    try:
        role = iam_backends[account]["global"].get_role_by_arn(role_arn)
    except (NotFoundException, KeyError):
        raise ServiceRoleError("AccessDenied", f"role {role_arn} does not exist") from None
    context = {"aws:SourceAccount": account}
    if source_arn:
        context["aws:SourceArn"] = source_arn
    if not trusts(role.assume_role_policy_document, service, context):
        raise ServiceRoleError(
            "AccessDenied", f"{service} is not authorized to perform: sts:AssumeRole on "
            f"resource: {role_arn}" + (f" for {source_arn}" if source_arn else ""))
    # Through the journal, so credentials handed out before a restart stay valid after it.
    return records.dispatch(records.ASSUME_ROLE, {
        "account": account, "region": region, "role_arn": role_arn,
        "session_name": session_name[:64]})


def _assume_route(payload: dict[str, Any]) -> dict[str, Any]:
    credentials = assume(payload["RoleArn"], payload["Service"], payload["SessionName"],
                         payload.get("SourceArn"), payload.get("Region", DEFAULT_REGION))
    return {"Credentials": credentials}


# Routes for processes that play an AWS service; others register theirs here.
SERVICE_ROUTES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "assume-role": _assume_route,
    "authorize": authorization.authorize,  # SageMaker Runtime's checks, for local hosting
}


class ServiceApp:
    """WSGI middleware serving the service routes to holders of the service token."""

    def __init__(self, app: WsgiApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(ROUTE_PREFIX):
            return self.app(environ, start_response)
        given = environ.get("HTTP_" + TOKEN_HEADER.upper().replace("-", "_"), "")
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return _answer(start_response, 403, {"Code": "AccessDenied",
                                                 "Message": "a service route needs the token"})
        handler = SERVICE_ROUTES.get(path[len(ROUTE_PREFIX):])
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 404, {"Code": "NotFound", "Message": path})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            payload = json.loads(environ["wsgi.input"].read(length) or b"{}")
            return _answer(start_response, 200, handler(payload))
        except ServiceRoleError as e:
            return _answer(start_response, e.status, {"Code": e.code, "Message": e.message})
        except (KeyError, ValueError, TypeError) as e:
            return _answer(start_response, 400, {"Code": "ValidationError",
                                                 "Message": f"{type(e).__name__}: {e}"})


def _answer(start_response: Callable, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(data)))])
    return [data]


def call_service(route: str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Call a service route of the emulator at `AWS_ENDPOINT_URL` with this process's token."""
    url = os.environ.get("AWS_ENDPOINT_URL")
    token = os.environ.get(SERVICE_TOKEN_VARIABLE)
    if not url or not token:
        raise ServiceRoleError("ConfigurationError", f"acting as an AWS service needs "
                               f"AWS_ENDPOINT_URL and {SERVICE_TOKEN_VARIABLE}", 400)
    request = urllib.request.Request(
        url.rstrip("/") + ROUTE_PREFIX + route, data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", TOKEN_HEADER: token}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        raise ServiceRoleError(body.get("Code", f"HTTP{e.code}"),
                               body.get("Message", str(e)), e.code) from None


def assume_over_http(role_arn: str, service: str, session_name: str,
                     source_arn: str | None = None) -> dict[str, Any]:
    """`assume()` from another process: the role's Credentials (AccessKeyId, …)."""
    payload = {"RoleArn": role_arn, "Service": service, "SessionName": session_name}
    if source_arn:
        payload["SourceArn"] = source_arn
    return call_service("assume-role", payload)["Credentials"]
