"""Local hosting checks the caller as SageMaker Runtime does, and loads the model as its role.

Real clients against the session emulator (IAM enforced, the tests its bootstrap admin) and a
hosting server in this process: boto3 `sagemaker-runtime` signed by a role allowed
`InvokeEndpoint` on exactly one endpoint, by an unknown key, by nobody, with a forged signature;
and endpoints whose execution role may, or may not, read the model data.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from hosted_model import build_model_dir, tar_model_dir
from iam_roles import SAGEMAKER_TRUST, create_execution_role
from PIL import Image

from breedops.settings import DEFAULT_REGION

pytestmark = pytest.mark.emulator

ONE_ATTEMPT = Config(retries={"max_attempts": 1, "mode": "standard"})


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), (200, 30, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Hosted:
    url: str
    server: object
    account: str
    endpoint: str  # the invoker may invoke this one
    other: str  # served too, but not by the invoker
    unreadable: str  # its execution role may not read the model data
    unreadable_role: str
    model_url: str
    invoker: dict  # boto3 Session kwargs of the invoker role's session
    invoker_arn: str  # its assumed-role ARN

    def arn(self, endpoint: str) -> str:
        return f"arn:aws:sagemaker:{DEFAULT_REGION}:{self.account}:endpoint/{endpoint.lower()}"

    def client(self, config: Config = ONE_ATTEMPT, **credentials: str | None):
        session = boto3.Session(region_name=DEFAULT_REGION, **(credentials or self.invoker))
        return session.client("sagemaker-runtime", endpoint_url=self.url, config=config)


def _endpoint(sagemaker, name: str, model_url: str, role_arn: str) -> None:
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=role_arn, PrimaryContainer={
        "Image": "pytorch-inference:2.5-cpu", "ModelDataUrl": model_url})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


@pytest.fixture(scope="module")
def hosted(aws_emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    from breedops.local.hosting.registry import EndpointRegistry
    from breedops.local.hosting.server import HostingServer

    suffix = uuid.uuid4().hex[:8]
    iam, s3, sagemaker, sts = (boto3.client(s) for s in ("iam", "s3", "sagemaker", "sts"))
    identity = sts.get_caller_identity()
    account = identity["Account"]
    bogus = boto3.Session(aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
                          aws_secret_access_key="x" * 40, region_name=DEFAULT_REGION)
    with pytest.raises(ClientError):  # these tests are about an emulator that enforces IAM
        bogus.client("sts").get_caller_identity()

    bucket = f"hosting-auth-{suffix}"
    s3.create_bucket(Bucket=bucket)
    key = "jobs/tiny/output/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key,
                  Body=tar_model_dir(build_model_dir(tmp_path_factory.mktemp("auth-model"))))
    model_url = f"s3://{bucket}/{key}"
    execution = create_execution_role(iam, f"hosting-exec-{suffix}", bucket)
    unreadable_role = iam.create_role(RoleName=f"hosting-noread-{suffix}",
                                      AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST),
                                      )["Role"]["Arn"]
    names = {"endpoint": f"Auth-{suffix}", "other": f"other-{suffix}",
             "unreadable": f"noread-{suffix}"}
    _endpoint(sagemaker, names["endpoint"], model_url, execution)
    _endpoint(sagemaker, names["other"], model_url, execution)
    _endpoint(sagemaker, names["unreadable"], model_url, unreadable_role)

    invoker = f"hosting-invoker-{suffix}"
    role_arn = iam.create_role(RoleName=invoker, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": identity["Arn"]}}]}),
                               )["Role"]["Arn"]
    endpoint_arn = (f"arn:aws:sagemaker:{DEFAULT_REGION}:{account}:endpoint/"
                    f"{names['endpoint'].lower()}")
    iam.put_role_policy(RoleName=invoker, PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                                                "Action": "sagemaker:InvokeEndpoint",
                                                "Resource": endpoint_arn}]}))
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="caller")["Credentials"]

    server = HostingServer(("127.0.0.1", 0), registry=EndpointRegistry(
        tmp_path_factory.mktemp("auth-hosting"), ttl_seconds=0.5))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Hosted(
            url=f"http://127.0.0.1:{server.server_address[1]}", server=server, account=account,
            model_url=model_url, unreadable_role=unreadable_role, **names,
            invoker={"aws_access_key_id": credentials["AccessKeyId"],
                     "aws_secret_access_key": credentials["SecretAccessKey"],
                     "aws_session_token": credentials["SessionToken"]},
            invoker_arn=f"arn:aws:sts::{account}:assumed-role/{invoker}/caller")
    finally:
        server.shutdown()
        server.server_close()


def _error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = raised.value.response
    return (response["Error"]["Code"], response["Error"]["Message"],
            response["ResponseMetadata"]["HTTPStatusCode"])


def test_role_allowed_on_exactly_that_endpoint_is_served(hosted):
    response = hosted.client().invoke_endpoint(EndpointName=hosted.endpoint,
                                               ContentType="image/jpeg", Body=jpeg())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert "predictions" in json.loads(response["Body"].read())


def test_same_role_on_another_endpoint_is_access_denied(hosted):
    with pytest.raises(ClientError) as raised:
        hosted.client().invoke_endpoint(EndpointName=hosted.other, ContentType="image/jpeg",
                                        Body=jpeg())
    message = (f"User: {hosted.invoker_arn} is not authorized to perform: "
               f"sagemaker:InvokeEndpoint on resource: {hosted.arn(hosted.other)} because no "
               "identity-based policy allows the sagemaker:InvokeEndpoint action")
    assert _error(raised) == ("AccessDeniedException", message, 403)


def test_denied_before_the_endpoint_is_looked_up(hosted):
    """AWS checks permission first: a caller without it learns nothing of what exists."""
    with pytest.raises(ClientError) as raised:
        hosted.client().invoke_endpoint(EndpointName="no-such-endpoint",
                                        ContentType="image/jpeg", Body=jpeg())
    assert _error(raised)[0] == "AccessDeniedException"


def test_unknown_key_is_an_unrecognized_client(hosted):
    client = hosted.client(aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
                           aws_secret_access_key="x" * 40)
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName=hosted.endpoint, ContentType="image/jpeg",
                               Body=jpeg())
    assert _error(raised) == ("UnrecognizedClientException",
                              "The security token included in the request is invalid.", 403)


def test_unsigned_request_misses_the_authentication_token(hosted):
    client = boto3.client("sagemaker-runtime", endpoint_url=hosted.url,
                          region_name=DEFAULT_REGION,
                          config=ONE_ATTEMPT.merge(Config(signature_version=UNSIGNED)))
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName=hosted.endpoint, ContentType="image/jpeg",
                               Body=jpeg())
    assert _error(raised) == ("MissingAuthenticationTokenException",
                              "Missing Authentication Token", 403)


def test_tampered_signature_is_invalid(hosted):
    client = hosted.client()

    def tamper(request, **kwargs):
        auth = request.headers["Authorization"]
        auth = auth.decode() if isinstance(auth, bytes) else auth
        request.headers["Authorization"] = auth[:-4] + ("0000" if auth[-4:] != "0000" else "1111")

    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", tamper)
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName=hosted.endpoint, ContentType="image/jpeg",
                               Body=jpeg())
    code, message, status = _error(raised)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("The request signature we calculated does not match")


def test_admin_without_a_resource_scope_is_served(hosted):
    """The bootstrap admin (Action *, Resource *) may invoke anything: the default client."""
    client = boto3.client("sagemaker-runtime", endpoint_url=hosted.url, config=ONE_ATTEMPT)
    response = client.invoke_endpoint(EndpointName=hosted.other, ContentType="image/jpeg",
                                      Body=jpeg())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_model_is_downloaded_as_the_execution_role(hosted):
    """The role without s3:GetObject on the artifact cannot load it: the endpoint fails to load
    with a message that names the role and the object, as SageMaker's does."""
    client = boto3.client("sagemaker-runtime", endpoint_url=hosted.url, config=ONE_ATTEMPT)
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName=hosted.unreadable, ContentType="image/jpeg",
                               Body=jpeg())
    code, message, status = _error(raised)
    assert (code, status) == ("ServiceUnavailable", 503)
    assert "Failed to download model data" in message
    assert hosted.unreadable_role in message and hosted.model_url in message
    assert "AccessDenied" in message


def test_role_not_trusting_sagemaker_cannot_load_the_model(hosted, aws_emulator):
    iam, sagemaker = boto3.client("iam"), boto3.client("sagemaker")
    name = f"untrusted-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    _endpoint(sagemaker, name, hosted.model_url, role)
    client = boto3.client("sagemaker-runtime", endpoint_url=hosted.url, config=ONE_ATTEMPT)
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName=name, ContentType="image/jpeg", Body=jpeg())
    code, message, status = _error(raised)
    assert (code, status) == ("ServiceUnavailable", 503)
    assert f"SageMaker cannot assume the execution role {role}" in message


@pytest.mark.parametrize("variable, value", [
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),  # nothing listens: the emulator is down
    ("BREEDOPS_SERVICE_TOKEN", "not-the-token"),  # the emulator refuses hosting's route
])
def test_unchecked_requests_are_refused_not_served(hosted, monkeypatch, variable, value):
    hosted.client().invoke_endpoint(EndpointName=hosted.endpoint, ContentType="image/jpeg",
                                    Body=jpeg())  # the model is loaded, the account known
    monkeypatch.setenv(variable, value)
    with pytest.raises(ClientError) as raised:
        hosted.client().invoke_endpoint(EndpointName=hosted.endpoint,
                                        ContentType="image/jpeg", Body=jpeg())
    code, message, status = _error(raised)
    assert (code, status) == ("ServiceUnavailable", 503)
    assert "cannot be authorized" in message


def test_oversized_payload_is_refused_unread(hosted):
    """A Content-Length over the limit is answered at once: hosting never waits for the body."""
    connection = http.client.HTTPConnection(hosted.url.removeprefix("http://"), timeout=10)
    try:
        connection.putrequest("POST", f"/endpoints/{hosted.endpoint}/invocations")
        connection.putheader("Content-Type", "image/jpeg")
        connection.putheader("Content-Length", str(6 * 1024 * 1024 + 1))
        connection.endheaders()  # and no body at all
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413
    assert response.getheader("x-amzn-ErrorType") == "ValidationError"
    assert response.getheader("Connection") == "close"
    assert "the limit is 6291456 bytes" in body["message"]
