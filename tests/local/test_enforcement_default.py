"""Every emulator enforces IAM from its first request, as AWS does: who is not signed in with a
key the account knows is refused, and the emulator's own routes are closed to the public."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.emulator


def _http(url: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_bootstrap_admin_is_the_caller(aws_emulator):
    identity = boto3.client("sts").get_caller_identity()
    assert identity["Arn"] == "arn:aws:iam::123456789012:user/breedops-admin"


def test_unsigned_json_request_is_refused(aws_emulator):
    anonymous = boto3.client("sagemaker", config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as raised:
        anonymous.list_training_jobs()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unsigned_query_request_is_denied(aws_emulator):
    # One address for every service: without a signature's credential scope the request
    # cannot name IAM, and lands on S3, which refuses anonymous callers.
    status, body = _http(f"{aws_emulator.url}/?Action=ListUsers&Version=2010-05-08")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_unsigned_s3_write_is_access_denied_and_writes_nothing(aws_emulator, unique_name):
    boto3.client("s3").create_bucket(Bucket=unique_name)
    anonymous = boto3.client("s3", config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as raised:
        anonymous.put_object(Bucket=unique_name, Key="data/x", Body=b"x")
    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    assert boto3.client("s3").list_objects_v2(Bucket=unique_name)["KeyCount"] == 0


def test_unknown_key_is_an_invalid_client_token(aws_emulator):
    stranger = boto3.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                             aws_secret_access_key="x", region_name="us-east-1")
    with pytest.raises(ClientError, match="InvalidClientTokenId"):
        stranger.client("iam").list_users()


def test_internal_records_are_not_reachable_over_http(aws_emulator):
    payload = json.dumps({"account": "123456789012", "region": "us-east-1",
                          "role_arn": "arn:aws:iam::123456789012:role/any",
                          "session_name": "x"}).encode()
    status, _ = _http(f"{aws_emulator.url}/_breedops/sagemaker/assume-role", "POST", payload,
                      {"Content-Type": "application/json"})
    assert status == 404


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_service_routes_need_the_service_token(aws_emulator, token):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Breedops-Service-Token"] = token
    payload = json.dumps({"RoleArn": "arn:aws:iam::123456789012:role/any",
                          "Service": "sagemaker.amazonaws.com", "SessionName": "x"}).encode()
    status, body = _http(f"{aws_emulator.url}/_breedops/service/assume-role", "POST", payload,
                         headers)
    assert status == 403 and json.loads(body)["Code"] == "AccessDenied"


def test_a_service_assumes_only_roles_that_trust_it(aws_emulator, unique_name):
    from breedops.local import service_roles

    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}]}
    arn = iam.create_role(RoleName=unique_name,
                          AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    credentials = service_roles.assume_over_http(arn, service_roles.SAGEMAKER_PRINCIPAL, "t")
    session = boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"],
                            region_name="us-east-1")
    assert session.client("sts").get_caller_identity()["Arn"].endswith(
        f":assumed-role/{unique_name}/t")
    with pytest.raises(service_roles.ServiceRoleError, match="not authorized"):
        service_roles.assume_over_http(arn, service_roles.LAMBDA_PRINCIPAL, "t")
