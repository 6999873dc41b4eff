"""Bounded load through the emulator's Lambda API: zero errors when warm, throttles counted."""

from __future__ import annotations

import json
import uuid

import pytest

from breedops.load.generator import LoadError, open_loop
from breedops.load.targets import lambda_sender, sample_image

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def function_factory(load_deployment, tmp_path_factory):
    """Deploys the function (alias live) with a given reserved concurrency; returns its name."""
    import boto3

    from breedops.serving.lambda_package import build_lambda_zip

    zip_path = build_lambda_zip(target=tmp_path_factory.mktemp("load-build") / "lambda.zip")
    role_name = f"load-lambda-{uuid.uuid4().hex[:8]}"
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName=role_name,
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role_name, PolicyName="endpoint", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
            "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/"
                        f"{load_deployment.endpoint_name}"}]}))
    client = boto3.client("lambda")

    def create(reserved: int) -> str:
        name = f"load-predict-{uuid.uuid4().hex[:8]}"
        client.create_function(
            FunctionName=name, Runtime="python3.12", Role=role,
            Handler="breedops_lambda.handler.lambda_handler",
            Code={"ZipFile": zip_path.read_bytes()}, MemorySize=256, Timeout=30, Publish=True,
            Environment={"Variables": {
                "ENDPOINT_NAME": load_deployment.endpoint_name, "TOP_K": "3",
                # this module's hosting, which the emulator process does not know of
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": load_deployment.hosting_url}})
        client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        client.put_function_concurrency(FunctionName=name,
                                        ReservedConcurrentExecutions=reserved)
        return name

    return create


def test_lambda_load_below_capacity_has_zero_errors(function_factory):
    with lambda_sender(function_factory(2), "live", sample_image(64)) as send:
        assert send().status == "200"  # the cold start, outside the measurement
        report = open_loop(send, rps=4, duration_s=1, max_in_flight=2).to_dict()
    assert report["completed"] == 4 and report["errors"] == 0 and report["throttled"] == 0


def test_lambda_load_beyond_reserved_concurrency_counts_throttles(function_factory):
    with lambda_sender(function_factory(1), "live", sample_image(64)) as send:
        send()
        report = open_loop(send, rps=40, duration_s=0.5, max_in_flight=20).to_dict()
    assert report["completed"] == 20
    assert report["throttled"] > 0
    assert report["errors_by_status"]["429"] == report["throttled"]
    assert report["ok"] + report["throttled"] == 20


def test_lambda_sender_refuses_remote_emulator(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://198.51.100.7:5566")
    with pytest.raises(LoadError, match="not a loopback"), lambda_sender("any", "live", b""):
        pass
