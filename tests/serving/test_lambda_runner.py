"""The Lambda package: built reproducibly, run by the local runner against local hosting with
its concurrency, and invoked through the emulator by `breedops invoke`."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest
from PIL import Image

from breedops.serving import lambda_runner
from breedops.serving.lambda_package import build_lambda_zip

from .conftest import LABELS


def image_bytes(mode: str = "RGB", fmt: str = "JPEG", size: tuple[int, int] = (40, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()

pytestmark = pytest.mark.emulator


def test_build_lambda_zip_is_reproducible_and_small(tmp_path):
    first = build_lambda_zip(target=tmp_path / "a.zip")
    second = build_lambda_zip(target=tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size < 100 * 1024
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names) and "breedops_lambda/handler.py" in names
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in archive.infolist())
        assert not any("__pycache__" in n for n in names)


def test_build_lambda_zip_without_handler_raises(tmp_path):
    from breedops.errors import BreedopsError

    with pytest.raises(BreedopsError, match="no handler.py"):
        build_lambda_zip(source=tmp_path, target=tmp_path / "x.zip")


@pytest.fixture(scope="module")
def lambda_function(deployment, tmp_path_factory):
    """The built package as a runner runs it, against local hosting, reserved concurrency 5."""
    zip_path = build_lambda_zip(target=tmp_path_factory.mktemp("build") / "lambda.zip")
    code_dir = tmp_path_factory.mktemp("function")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(code_dir)
    return lambda_runner.FunctionSpec(
        name="breedops-test-predict", code_dir=code_dir, memory_mb=256, timeout_s=30,
        environment={"ENDPOINT_NAME": deployment.endpoint_name, "TOP_K": "3",
                     "LOG_LEVEL": "INFO"},
        reserved_concurrency=5)


@pytest.fixture(scope="module")
def deployed_function(deployment, tmp_path_factory):
    """The function as Terraform deploys it, in the emulator: its role (the endpoint, its
    log), version 1 behind the alias live, local hosting as its SageMaker Runtime."""
    import boto3

    name = "breedops-test-predict"
    zip_path = build_lambda_zip(target=tmp_path_factory.mktemp("deploy") / "lambda.zip")
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="serving-test-lambda", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}],
    }))["Role"]["Arn"]
    iam.put_role_policy(RoleName="serving-test-lambda", PolicyName="lambda",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
                             "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/"
                                         f"{deployment.endpoint_name}"},
                            {"Effect": "Allow",
                             "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                             "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:"
                                         f"/aws/lambda/{name}:log-stream:*"}]}))
    boto3.client("logs").create_log_group(logGroupName=f"/aws/lambda/{name}")
    client = boto3.client("lambda")
    client.create_function(
        FunctionName=name, Runtime="python3.12", Role=role,
        Handler="breedops_lambda.handler.lambda_handler", Code={"ZipFile": zip_path.read_bytes()},
        MemorySize=256, Timeout=30, Publish=True,
        Environment={"Variables": {"ENDPOINT_NAME": deployment.endpoint_name, "TOP_K": "3",
                                   "LOG_LEVEL": "INFO",
                                   # local hosting of this test session, not the emulator's
                                   "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": deployment.hosting_url}},
    )
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    return name


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


def test_invoke_command_prints_report_lines_and_summary(deployed_function, tmp_path, capsys):
    from breedops.cli import main

    image = tmp_path / "dog.png"
    image.write_bytes(image_bytes("RGBA", "PNG"))
    assert main(["invoke", "--image", str(image), "--function", deployed_function,
                 "--concurrency", "2", "--requests", "3"]) == 0
    out = capsys.readouterr().out
    reports = [line for line in out.splitlines() if line.startswith("REPORT RequestId: ")]
    assert len(reports) == 3
    assert all("Billed Duration:" in r and "Memory Size: 256 MB" in r for r in reports)
    assert 1 <= sum("Init Duration:" in r for r in reports) <= 2  # one environment per client
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary == {**summary, "function": deployed_function, "qualifier": "live",
                       "requests": 3, "accepted": 3, "ok": 3, "throttled": 0, "errors": 0}
    assert summary["p50_ms"] <= summary["p95_ms"]
    first = json.loads(out[out.index("\n{") + 1:out.rindex("\n{")])
    assert json.loads(first["body"])["predictions"][0]["label"] in LABELS


def test_invoke_command_missing_image_fails_clearly(capsys):
    from breedops.cli import main

    assert main(["invoke", "--image", "no-such.jpg", "--function", "f"]) == 2
    assert "no such file" in capsys.readouterr().err
