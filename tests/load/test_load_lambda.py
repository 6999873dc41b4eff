"""Bounded load through the local Lambda runner: zero errors when warm, throttles counted."""

from __future__ import annotations

import json
import uuid

import pytest

from breedops.load.generator import LoadError, open_loop
from breedops.load.targets import lambda_sender, sample_image

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def function_factory(load_deployment, tmp_path_factory):
    """Creates the deployed function with a given reserved concurrency; yields (name, zip)."""
    import boto3

    from breedops.serving.lambda_package import build_lambda_zip

    zip_path = build_lambda_zip(target=tmp_path_factory.mktemp("load-build") / "lambda.zip")
    role = boto3.client("iam").create_role(
        RoleName=f"load-lambda-{uuid.uuid4().hex[:8]}",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    client = boto3.client("lambda")

    def create(reserved: int) -> str:
        name = f"load-predict-{uuid.uuid4().hex[:8]}"
        client.create_function(
            FunctionName=name, Runtime="python3.12", Role=role,
            Handler="breedops_lambda.handler.lambda_handler",
            Code={"ZipFile": zip_path.read_bytes()}, MemorySize=256, Timeout=30,
            Environment={"Variables": {"ENDPOINT_NAME": load_deployment.endpoint_name,
                                       "TOP_K": "3"}})
        client.put_function_concurrency(FunctionName=name,
                                        ReservedConcurrentExecutions=reserved)
        return name

    return create, zip_path


def test_lambda_load_below_capacity_has_zero_errors(function_factory):
    create, zip_path = function_factory
    with lambda_sender(create(2), sample_image(64), zip_fallback=zip_path) as send:
        assert send().status == "200"  # the cold start, outside the measurement
        report = open_loop(send, rps=4, duration_s=1, max_in_flight=2).to_dict()
    assert report["completed"] == 4 and report["errors"] == 0 and report["throttled"] == 0


def test_lambda_load_beyond_reserved_concurrency_counts_throttles(function_factory):
    create, zip_path = function_factory
    with lambda_sender(create(1), sample_image(64), zip_fallback=zip_path) as send:
        send()
        report = open_loop(send, rps=40, duration_s=0.5, max_in_flight=20).to_dict()
    assert report["completed"] == 20
    assert report["throttled"] > 0
    assert report["errors_by_status"]["429"] == report["throttled"]
    assert report["ok"] + report["throttled"] == 20


def test_lambda_sender_refuses_remote_emulator(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://198.51.100.7:5566")
    with pytest.raises(LoadError, match="not a loopback"), lambda_sender("any", b""):
        pass
