"""`authorization.authorize` in process: requests signed by a real boto3 client, decided by moto.

A boto3 `sagemaker-runtime` client signs `InvokeEndpoint` as it would for local hosting; a
`before-send` hook catches the request on its way out and answers it itself, so the test hands
`authorize` exactly what hosting receives. The accounts, keys, sessions and policies live in
moto's in-process backends (`mock_aws`), with enforcement switched on once they exist.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from breedops.local import authorization, iam_enforcement

REGION, ACCOUNT = "us-east-1", "123456789012"
ENDPOINT = "Tiny-Endpoint"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/tiny-endpoint"
OTHER_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/other"
ACTION = "sagemaker:InvokeEndpoint"
HOSTING = "http://127.0.0.1:5567"
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole",
     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@dataclass
class Account:
    caller: dict  # credentials of a role allowed to invoke ENDPOINT only
    denied: dict  # credentials of a role with an explicit deny on ENDPOINT
    user: dict  # an IAM user's key, allowed everything on sagemaker


def _credentials(c: dict) -> dict:
    return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c.get("SessionToken")}


@pytest.fixture
def account(aws_credentials, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    from moto import mock_aws, settings
    from moto.core.authorization import ActionAuthenticatorMixin

    iam_enforcement.apply()
    with mock_aws():
        iam, sts = boto3.client("iam", region_name=REGION), boto3.client("sts", region_name=REGION)
        sessions = {}
        for name, statements in {
            "caller": [{"Effect": "Allow", "Action": ACTION, "Resource": ENDPOINT_ARN}],
            "denied": [{"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"},
                       {"Effect": "Deny", "Action": ACTION, "Resource": ENDPOINT_ARN}],
        }.items():
            arn = iam.create_role(RoleName=name,
                                  AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
            iam.put_role_policy(RoleName=name, PolicyName="p",
                                PolicyDocument=_policy(*statements))
            sessions[name] = _credentials(
                sts.assume_role(RoleArn=arn, RoleSessionName="session")["Credentials"])
        iam.create_user(UserName="alice")
        iam.put_user_policy(UserName="alice", PolicyName="p", PolicyDocument=_policy(
            {"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"}))
        key = iam.create_access_key(UserName="alice")["AccessKey"]
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
        yield Account(caller=sessions["caller"], denied=sessions["denied"],
                      user=_credentials(key))


def captured_request(credentials: dict | None, endpoint: str = ENDPOINT,
                     body: bytes = b"\xff\xd8image", tamper=None, region: str = REGION) -> dict:
    """What hosting receives from a boto3 InvokeEndpoint, as the `authorize` payload."""
    from botocore import UNSIGNED

    config = Config(signature_version=UNSIGNED) if credentials is None else None
    session = boto3.Session(region_name=region, **(credentials or {}))
    client = session.client("sagemaker-runtime", endpoint_url=HOSTING, config=config)
    captured: dict = {}

    def send(request, **kwargs):
        if tamper:
            tamper(request)
        url = urlsplit(request.url)
        captured.update(
            method=request.method, path=url.path, query=url.query,
            headers={"Host": url.netloc, **{k: (v.decode() if isinstance(v, bytes) else v)
                                             for k, v in request.headers.items()}},
            body=base64.b64encode(request.body or b"").decode())
        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, None)

    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", send)
    client.invoke_endpoint(EndpointName=endpoint, ContentType="image/jpeg", Body=body)
    return {**captured, "action": ACTION,
            "resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{endpoint.lower()}"}


def test_role_allowed_on_exactly_that_endpoint(account):
    answer = authorization.authorize(captured_request(account.caller))
    assert answer == {"allowed": True,
                      "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/caller/session"}


def test_role_on_another_endpoint_is_denied_naming_action_and_resource(account):
    answer = authorization.authorize(captured_request(account.caller, endpoint="other"))
    assert answer["allowed"] is False
    assert answer["principal"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/caller/session"
    assert answer["error"] == {
        "code": "AccessDeniedException", "status": 403,
        "message": f"User: arn:aws:sts::{ACCOUNT}:assumed-role/caller/session is not authorized to "
                   f"perform: {ACTION} on resource: {OTHER_ARN} because no identity-based "
                   f"policy allows the {ACTION} action"}


def test_explicit_deny_wins_and_says_so(account):
    answer = authorization.authorize(captured_request(account.denied))
    assert answer["error"]["code"] == "AccessDeniedException"
    assert answer["error"]["message"].endswith(
        f"on resource: {ENDPOINT_ARN} with an explicit deny in an identity-based policy")
    # The same role may invoke any other endpoint.
    assert authorization.authorize(captured_request(account.denied, endpoint="other"))["allowed"]


def test_iam_user_key_is_checked_too(account):
    answer = authorization.authorize(captured_request(account.user, endpoint="any"))
    assert answer == {"allowed": True, "principal": f"arn:aws:iam::{ACCOUNT}:user/alice"}


def test_unknown_key_is_an_unrecognized_client(account):
    answer = authorization.authorize(captured_request(
        {"aws_access_key_id": "AKIAUNKNOWNUNKNOWN00", "aws_secret_access_key": "x" * 40}))
    assert answer == {"allowed": False, "principal": None, "error": {
        "code": "UnrecognizedClientException", "status": 403,
        "message": "The security token included in the request is invalid."}}


def test_wrong_session_token_is_an_unrecognized_client(account):
    forged = {**account.caller, "aws_session_token": "forged"}
    answer = authorization.authorize(captured_request(forged))
    assert answer["error"]["code"] == "UnrecognizedClientException"


def test_unsigned_request_misses_the_token(account):
    answer = authorization.authorize(captured_request(None))
    assert answer["error"] == {"code": "MissingAuthenticationTokenException", "status": 403,
                               "message": "Missing Authentication Token"}


def test_tampered_signature_and_tampered_body_are_invalid_signatures(account):
    def flip_signature(request):
        auth = request.headers["Authorization"]
        auth = auth.decode() if isinstance(auth, bytes) else auth
        last = "0" if auth[-1] != "0" else "1"
        request.headers["Authorization"] = auth[:-1] + last

    answer = authorization.authorize(captured_request(account.caller, tamper=flip_signature))
    assert answer["error"]["code"] == "InvalidSignatureException"
    assert answer["error"]["message"].startswith("The request signature we calculated")
    assert answer["principal"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/caller/session"

    signed = captured_request(account.caller)
    swapped = {**signed, "body": base64.b64encode(b"another image").decode()}
    assert authorization.authorize(swapped)["error"]["code"] == "InvalidSignatureException"


def _without(request: dict, name: str) -> dict:
    return {**request, "headers": {k: v for k, v in request["headers"].items()
                                   if k.lower() != name.lower()}}


@pytest.mark.parametrize("header", ["Content-Type", "Host", "X-Amz-Date"])
def test_a_signed_header_missing_from_the_request_is_refused(account, header):
    answer = authorization.authorize(_without(captured_request(account.caller), header))
    assert not answer["allowed"]
    if header == "X-Amz-Date":  # needed before the signature is computed
        assert answer["error"]["code"] == "IncompleteSignatureException"
    else:
        assert answer["error"]["code"] == "InvalidSignatureException"
        assert answer["error"]["message"].startswith("The request signature we calculated")


def test_a_temporary_key_without_its_session_token_is_an_unrecognized_client(account):
    answer = authorization.authorize(_without(captured_request(account.caller),
                                              "X-Amz-Security-Token"))
    assert answer["error"]["code"] == "UnrecognizedClientException"


def test_body_hash_stands_in_for_the_body(account):
    signed = captured_request(account.caller, body=b"x" * 100_000)
    digest = hashlib.sha256(b"x" * 100_000).hexdigest()
    by_hash = {k: v for k, v in signed.items() if k != "body"} | {"body_sha256": digest}
    assert authorization.authorize(by_hash)["allowed"]
    wrong = by_hash | {"body_sha256": hashlib.sha256(b"y").hexdigest()}
    assert authorization.authorize(wrong)["error"]["code"] == "InvalidSignatureException"


def test_credential_scope_must_name_the_service_and_region(account):
    other_region = captured_request(account.caller, region="eu-west-1")
    other_region["resource"] = ENDPOINT_ARN  # the endpoint lives in us-east-1
    answer = authorization.authorize(other_region)
    assert answer["error"] == {"code": "InvalidSignatureException", "status": 403,
                               "message": "Credential should be scoped to a valid region. "}
    wrong_service = captured_request(account.caller) | {"action": "lambda:InvokeFunction"}
    answer = authorization.authorize(wrong_service)
    assert answer["error"]["message"] == (
        "Credential should be scoped to correct service: 'lambda'. ")


def test_stale_signature_has_expired(account):
    signed = captured_request(account.caller)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=6)
    with pytest.raises(authorization.Denial, match="Signature expired"):
        authorization._check_clock(signed["headers"]["X-Amz-Date"], now=later)
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=6)
    with pytest.raises(authorization.Denial, match="Signature not yet current"):
        authorization._check_clock(signed["headers"]["X-Amz-Date"], now=earlier)


def test_expired_session_is_refused(account):
    from moto.core.utils import utcnow
    from moto.sts.models import sts_backends

    signed = captured_request(account.caller)
    for role in sts_backends[ACCOUNT]["aws"].assumed_roles:
        if role.access_key_id == account.caller["aws_access_key_id"]:
            role.expiration = utcnow() - datetime.timedelta(seconds=1)
    answer = authorization.authorize(signed)
    assert answer["error"] == {"code": "ExpiredTokenException", "status": 403, "message":
                               "The security token included in the request is expired"}


def test_malformed_authorization_is_an_incomplete_signature(account):
    signed = captured_request(account.caller)
    for value in ("Bearer abc", f"{authorization.ALGORITHM} Credential=AKIA/x"):
        bad = signed | {"headers": signed["headers"] | {"Authorization": value}}
        answer = authorization.authorize(bad)
        assert answer["error"]["code"] == "IncompleteSignatureException"
        assert answer["error"]["status"] == 400


def test_lowercase_header_names_are_accepted(account):
    signed = captured_request(account.caller)
    lowered = signed | {"headers": {k.lower(): v for k, v in signed["headers"].items()}}
    assert authorization.authorize(lowered)["allowed"]


def test_every_decision_reaches_the_callbacks(account, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setattr(authorization, "on_decision", [seen.append, lambda d: 1 / 0])
    authorization.authorize(captured_request(account.caller))
    authorization.authorize(captured_request(account.caller, endpoint="other"))
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/caller/session"
    assert seen == [
        {"principal": principal, "action": ACTION, "resource": ENDPOINT_ARN, "allowed": True,
         "code": None},
        {"principal": principal, "action": ACTION, "resource": OTHER_ARN, "allowed": False,
         "code": "AccessDeniedException"},
    ]


def test_without_enforcement_everything_is_allowed_unchecked(account, monkeypatch):
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    answer = authorization.authorize(captured_request(None))
    assert answer == {"allowed": True, "principal": None, "enforced": False}


def test_module_imports_without_moto():
    import subprocess
    import sys

    code = ("import sys, breedops.local.authorization; "
            "sys.exit(1 if any(m.startswith('moto') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
