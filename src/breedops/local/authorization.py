"""Authentication and authorization of requests the emulator does not serve itself.

SageMaker Runtime's `InvokeEndpoint` goes to local hosting, not to the emulator; but only the
emulator knows the account's keys, sessions and policies. So hosting hands each request, as it
received it, to `authorize()` (the service route `authorize`) before serving it, and the
emulator decides with moto's own machinery, as it decides for its own APIs:
`moto.iam.access_control.IAMRequest` looks the access key (and session token) up and checks the
SigV4 signature, then `check_action_permitted` evaluates the principal's policies against the
resource (resource- and condition-aware once `iam_enforcement.apply()` has run).

The answer names the principal and, for a denial, the error as SageMaker Runtime reports it:

| what                                   | code                                  | status |
|----------------------------------------|---------------------------------------|--------|
| no `Authorization` header              | `MissingAuthenticationTokenException` | 403    |
| a malformed `Authorization` header     | `IncompleteSignatureException`        | 400    |
| an unknown key or a wrong session token| `UnrecognizedClientException`         | 403    |
| an expired session                     | `ExpiredTokenException`               | 403    |
| a wrong signature, scope or clock      | `InvalidSignatureException`           | 403    |
| no policy allows the action            | `AccessDeniedException`               | 403    |

As long as moto does not enforce (enforcement off, or its first unauthenticated requests not
yet spent) every request is allowed unchecked, as moto allows its own.

Every decision goes to the callbacks in `on_decision` (an audit log attaches there).

The request's body need not travel: its SHA-256 (`body_sha256`) is all a SigV4 signature
covers, so a caller that has the body hashes it and sends the hash instead of `body`.
Kept free of moto imports at module level: processes outside the emulator import this module.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=5)  # SigV4's window, as AWS enforces it
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AUTHORIZATION_FIELD = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]*)")

# Called with every decision: {"principal", "action", "resource", "allowed", "code"}.
on_decision: list[Callable[[dict[str, Any]], None]] = []

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details.")
INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"


class Denial(Exception):
    """A request refused, with the error SageMaker Runtime answers."""

    def __init__(self, code: str, message: str, status: int = 403,
                 principal: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.principal = code, message, status, principal

    def error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status": self.status}


def authorize(payload: dict[str, Any]) -> dict[str, Any]:
    """Decide one request as hosting received it.

    `payload`: `method`, `path` (raw, as received), `query` (raw query string, optional),
    `headers` (name -> value), `body` (base64) or `body_sha256` (hex), `action`
    (`sagemaker:InvokeEndpoint`) and `resource` (the ARN acted on).
    Answers `{"allowed": bool, "principal": arn or None}`, with `"error": {"code", "message",
    "status"}` when denied; `"enforced": False` when the request was not checked at all.
    """
    action, resource = str(payload["action"]), str(payload["resource"])
    answer: dict[str, Any]
    if not _enforcing():
        answer = {"allowed": True, "principal": None, "enforced": False}
    else:
        try:
            answer = {"allowed": True, "principal": _check(payload, action, resource)}
        except Denial as denial:
            answer = {"allowed": False, "principal": denial.principal, "error": denial.error()}
    _record({"principal": answer["principal"], "action": action, "resource": resource,
             "allowed": answer["allowed"],
             "code": answer.get("error", {}).get("code")})
    return answer


def _record(decision: dict[str, Any]) -> None:
    for callback in on_decision:
        try:
            callback(dict(decision))
        except Exception:  # an audit hook must never change a decision
            log.exception("an authorization decision callback failed")


def _enforcing() -> bool:
    """Whether moto checks requests now (it counts its first unauthenticated ones; a request
    authorized here is not one of them, so it is not counted)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def canonical_header_name(name: str) -> str:
    """`x-amz-date` -> `X-Amz-Date`: the spelling moto's IAM request looks headers up by."""
    return "-".join(part.capitalize() for part in name.split("-"))


def payload_sha256(payload: dict[str, Any]) -> str:
    """The hex SHA-256 of the request body, given or computed from the base64 `body`."""
    if payload.get("body_sha256"):
        digest = str(payload["body_sha256"]).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("body_sha256 is not a hex SHA-256 digest")
        return digest
    return hashlib.sha256(base64.b64decode(payload.get("body") or "")).hexdigest()


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    fields = dict(_AUTHORIZATION_FIELD.findall(rest))
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if not fields.get(f)]
    if algorithm != ALGORITHM:
        raise Denial("IncompleteSignatureException",
                     f"Authorization header requires existence of the {ALGORITHM} algorithm "
                     f"(found {algorithm!r}).", 400)
    if missing:
        raise Denial("IncompleteSignatureException", " ".join(
            f"Authorization header requires '{f}' parameter." for f in missing)
            + f" Authorization={value}", 400)
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Denial("IncompleteSignatureException",
                     f"Credential should be scoped to a valid region, service and terminated "
                     f"by aws4_request: '{fields['Credential']}'.", 400)
    return fields


def _check_scope(scope: list[str], amz_date: str, action: str, resource: str) -> None:
    """The credential scope names the action's service, the resource's region, the day."""
    key_date, region, service = scope[1], scope[2], scope[3]
    expected_service = action.partition(":")[0]
    if service != expected_service:
        raise Denial("InvalidSignatureException",
                     f"Credential should be scoped to correct service: '{expected_service}'. ")
    parts = resource.split(":")
    if len(parts) > 3 and parts[3] and region != parts[3]:
        raise Denial("InvalidSignatureException",
                     "Credential should be scoped to a valid region. ")
    if key_date != amz_date[:8]:
        raise Denial("InvalidSignatureException",
                     f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                     f"of date from HTTP: '{key_date}' != '{amz_date[:8]}', from '{amz_date}'.")


def _check_clock(amz_date: str, now: datetime | None = None) -> None:
    try:
        signed = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise Denial("IncompleteSignatureException",
                     f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.", 400) from None
    now = now or datetime.now(UTC)
    stamp = now.strftime(AMZ_DATE_FORMAT)
    if signed < now - MAX_CLOCK_SKEW:
        earliest = (now - MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)
        raise Denial("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier "
                     f"than {earliest} ({stamp} - 5 min.)")
    if signed > now + MAX_CLOCK_SKEW:
        latest = (now + MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)
        raise Denial("InvalidSignatureException", f"Signature not yet current: {amz_date} is "
                     f"still later than {latest} ({stamp} + 5 min.)")


def _check(payload: dict[str, Any], action: str, resource: str) -> str:
    """The principal that signed the request, if it may perform `action` on `resource`."""
    from requests.structures import CaseInsensitiveDict

    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(
        {canonical_header_name(k): str(v) for k, v in (payload.get("headers") or {}).items()})
    authorization = headers.get("Authorization")
    if not authorization:
        raise Denial("MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = _parse_authorization(authorization)
    amz_date = headers.get("X-Amz-Date")
    if not amz_date:
        raise Denial("IncompleteSignatureException", "Authorization header requires existence "
                     "of either a 'X-Amz-Date' or a 'Date' header.", 400)
    scope = fields["Credential"].split("/")
    _check_clock(amz_date)
    _check_scope(scope, amz_date, action, resource)
    digest = payload_sha256(payload)
    declared = headers.get("X-Amz-Content-Sha256")
    if declared and declared not in (digest, UNSIGNED_PAYLOAD):
        raise Denial("InvalidSignatureException", SIGNATURE_MISMATCH)

    path = str(payload.get("path") or "/")
    if payload.get("query"):
        path = f"{path}?{payload['query']}"
    request = _request_class()(
        account_id=_account_of(scope[0]), method=str(payload.get("method") or "POST").upper(),
        path=path, data={}, body=b"", headers=headers,
        action=action.partition(":")[2], payload_sha256=digest, resource=resource)
    request._action = action  # the action as IAM names it, whatever service signed
    principal = request._access_key.arn
    _check_session_current(request, principal)
    # A header the signature covers but the request lacks cannot match (botocore's signer
    # would fail on a missing Host instead of answering).
    if any(name not in headers for name in fields["SignedHeaders"].split(";")):
        raise Denial("InvalidSignatureException", SIGNATURE_MISMATCH, principal=principal)
    request.check_signature()
    request.check_action_permitted(resource)
    return principal


def _account_of(access_key_id: str) -> str:
    """The account a key belongs to, as moto finds it for its own requests."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key_id)


def _check_session_current(request: Any, principal: str) -> None:
    """An assumed role's credentials stop working when the session expires (moto does not
    check this)."""
    from moto.core.utils import utcnow
    from moto.iam.access_control import AssumedRoleAccessKey
    from moto.sts.models import sts_backends

    key = request._access_key
    if not isinstance(key, AssumedRoleAccessKey):
        return
    for role in sts_backends[key.account_id][key.partition].assumed_roles:
        if role.access_key_id == key._access_key_id:
            if role.expiration < utcnow():
                raise Denial("ExpiredTokenException", EXPIRED_TOKEN, principal=principal)
            return


@cache
def _request_class() -> type:
    """moto's IAM request, raising SageMaker Runtime's errors and signing over a given hash."""
    from botocore.auth import SigV4Auth
    from moto.iam.access_control import IAMPolicy, IAMRequest, PermissionResult

    class HashedPayloadAuth(SigV4Auth):
        """SigV4 over the body's SHA-256: the signature covers nothing else of the body."""

        def __init__(self, credentials: Any, service: str, region: str, digest: str) -> None:
            super().__init__(credentials, service, region)
            self._digest = digest

        def payload(self, request: Any) -> str:
            return self._digest

    class RuntimeRequest(IAMRequest):
        def __init__(self, *, payload_sha256: str, resource: str, **kwargs: Any) -> None:
            self._payload_sha256, self._resource = payload_sha256, resource
            super().__init__(**kwargs)

        def _create_auth(self, credentials: Any) -> SigV4Auth:
            return HashedPayloadAuth(credentials, self._service, self._region,
                                     self._payload_sha256)

        def _raise_invalid_access_key(self, reason: str) -> None:
            raise Denial("UnrecognizedClientException", INVALID_TOKEN)

        def _raise_signature_does_not_match(self) -> None:
            raise Denial("InvalidSignatureException", SIGNATURE_MISMATCH,
                         principal=self._access_key.arn)

        def _raise_access_denied(self) -> None:
            # Called while the policies are evaluated (the request's condition context is set),
            # so evaluating them again tells an explicit deny from a missing allow.
            explicit = any(
                IAMPolicy(policy).is_action_permitted(self._action, self._resource)
                == PermissionResult.DENIED
                for policy in self._access_key.collect_policies())
            reason = ("with an explicit deny in an identity-based policy" if explicit else
                      f"because no identity-based policy allows the {self._action} action")
            principal = self._access_key.arn
            raise Denial("AccessDeniedException",
                         f"User: {principal} is not authorized to perform: {self._action} on "
                         f"resource: {self._resource} {reason}", principal=principal)

    return RuntimeRequest
