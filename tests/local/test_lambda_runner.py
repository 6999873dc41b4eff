"""The built Lambda package run by the local runner against local hosting, with its
concurrency."""

from __future__ import annotations

import base64
import json

import pytest
from hosted_model import LABELS, image_bytes

from breedops.local import lambda_runner
from breedops.serving.lambda_package import build_lambda_zip

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def lambda_function(deployment, tmp_path_factory):
    """The built package as a runner runs it, against local hosting, reserved concurrency 5."""
    zip_path = build_lambda_zip(target=tmp_path_factory.mktemp("build") / "lambda.zip")
    return lambda_runner.FunctionSpec.from_zip(
        "breedops-test-predict", zip_path, tmp_path_factory.mktemp("function"), memory_mb=256,
        timeout_s=30,
        environment={"ENDPOINT_NAME": deployment.endpoint_name, "TOP_K": "3",
                     "LOG_LEVEL": "INFO"},
        reserved_concurrency=5)


def event_for(data: bytes) -> dict:
    return {"body": base64.b64encode(data).decode(), "isBase64Encoded": True,
            "headers": {"Content-Type": "application/octet-stream"}}


@pytest.mark.parametrize(("mode", "fmt"), [("L", "JPEG"), ("RGBA", "PNG"), ("CMYK", "JPEG"),
                                           ("I;16", "PNG")])
def test_runner_end_to_end_image_modes_succeed(lambda_function, mode, fmt):
    runner = lambda_runner.LambdaRunner(lambda_function)
    try:
        result = runner.invoke(event_for(image_bytes(mode, fmt)))
    finally:
        runner.close()
    assert result.status == 200, result.payload
    body = json.loads(result.payload["body"])
    assert body["predictions"][0]["label"] in LABELS
    assert "_" not in body["predictions"][0]["breed"]
    assert result.init_ms is not None  # the first invocation was a cold start
    assert "Init Duration" in result.report_line()


def test_runner_end_to_end_truncated_jpeg_is_rejected(lambda_function):
    runner = lambda_runner.LambdaRunner(lambda_function)
    try:
        result = runner.invoke(event_for(image_bytes(size=(300, 300))[:900]))
        good = runner.invoke(event_for(image_bytes()))
    finally:
        runner.close()
    assert result.status == 400
    assert "rejected the image" in json.loads(result.payload["body"])["message"]
    assert good.status == 200 and good.init_ms is None  # a warm start on the same worker


def test_runner_reserved_concurrency_throttles_excess(lambda_function):
    runner = lambda_runner.LambdaRunner(lambda_function)
    try:
        results = lambda_runner.run_invocations(runner, event_for(image_bytes()), requests=10,
                                                concurrency=10)
    finally:
        runner.close()
    throttled = [r for r in results if r.throttled]
    accepted = [r for r in results if not r.throttled]
    assert len(results) == 10
    assert len(throttled) == runner.throttled == 5
    assert all(r.status == 429 and r.payload["errorType"] == "TooManyRequestsException"
               for r in throttled)
    assert len(accepted) == 5 and all(r.status == 200 for r in accepted)


def test_runner_provisioned_concurrency_initialises_before_first_request(lambda_function):
    from dataclasses import replace

    runner = lambda_runner.LambdaRunner(replace(lambda_function, provisioned_concurrency=2))
    try:
        result = runner.invoke(event_for(image_bytes()))
    finally:
        runner.close()
    assert result.status == 200 and result.init_ms is None
