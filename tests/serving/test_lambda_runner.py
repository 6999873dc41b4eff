"""The local Lambda runner: the deployed zip, run against local hosting, with concurrency."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

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
REPO_ROOT = Path(__file__).resolve().parents[2]


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
def lambda_function(aws_emulator, deployment, tmp_path_factory):
    """The function as Terraform deploys it, with reserved concurrency 5."""
    import boto3

    zip_path = build_lambda_zip(target=tmp_path_factory.mktemp("build") / "lambda.zip")
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="serving-test-lambda", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}],
    }))["Role"]["Arn"]
    client = boto3.client("lambda")
    client.create_function(
        FunctionName="breedops-test-predict", Runtime="python3.12", Role=role,
        Handler="breedops_lambda.handler.lambda_handler", Code={"ZipFile": zip_path.read_bytes()},
        MemorySize=256, Timeout=30,
        Environment={"Variables": {"ENDPOINT_NAME": deployment.endpoint_name, "TOP_K": "3",
                                   "LOG_LEVEL": "INFO"}},
    )
    client.put_function_concurrency(FunctionName="breedops-test-predict",
                                    ReservedConcurrentExecutions=5)
    spec = lambda_runner.function_from_emulator(
        "breedops-test-predict", tmp_path_factory.mktemp("function"), zip_fallback=zip_path)
    return spec


def event_for(data: bytes) -> dict:
    return {"body": base64.b64encode(data).decode(), "isBase64Encoded": True,
            "headers": {"Content-Type": "application/octet-stream"}}


def test_function_from_emulator_reads_configuration(lambda_function):
    assert lambda_function.reserved_concurrency == 5
    assert lambda_function.environment["ENDPOINT_NAME"] == "tiny"
    assert lambda_function.memory_mb == 256
    assert (lambda_function.code_dir / "breedops_lambda" / "handler.py").is_file()


def test_function_from_emulator_unknown_function_raises(aws_emulator, tmp_path):
    with pytest.raises(lambda_runner.LambdaRunnerError, match="not found"):
        lambda_runner.function_from_emulator("no-such-function", tmp_path)


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
    assert "Init Duration" in result.report_line(256)


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


def test_invoke_command_prints_report_lines_and_summary(lambda_function, tmp_path, capsys,
                                                        monkeypatch):
    from breedops.cli import main

    image = tmp_path / "dog.png"
    image.write_bytes(image_bytes("RGBA", "PNG"))
    # moto keeps a zip upload's code to itself: the runner runs the project's build/lambda.zip.
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))
    build_lambda_zip(source=REPO_ROOT / "lambda", target=tmp_path / "build" / "lambda.zip")
    assert main(["invoke", "--image", str(image), "--function", "breedops-test-predict",
                 "--concurrency", "2", "--requests", "3"]) == 0
    out = capsys.readouterr().out
    reports = [line for line in out.splitlines() if line.startswith("REPORT RequestId: ")]
    assert len(reports) == 3
    assert all("Billed Duration:" in r and "Memory Size: 256 MB" in r for r in reports)
    assert sum("Init Duration:" in r for r in reports) == 2  # two environments, two cold starts
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary == {**summary, "requests": 3, "accepted": 3, "ok": 3, "throttled": 0}


def test_invoke_command_missing_image_fails_clearly(capsys):
    from breedops.cli import main

    assert main(["invoke", "--image", "no-such.jpg", "--function", "f"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_function_from_emulator_reads_provisioned_concurrency(lambda_function, tmp_path):
    import boto3

    client = boto3.client("lambda")
    role = client.get_function(FunctionName="breedops-test-predict")["Configuration"]["Role"]
    client.create_function(
        FunctionName="breedops-test-provisioned", Runtime="python3.12", Role=role,
        Handler="breedops_lambda.handler.lambda_handler",
        Code={"ZipFile": build_lambda_zip(target=tmp_path / "l.zip").read_bytes()},
    )
    client.create_alias(FunctionName="breedops-test-provisioned", Name="live",
                        FunctionVersion="$LATEST")
    client.put_provisioned_concurrency_config(FunctionName="breedops-test-provisioned",
                                              Qualifier="live",
                                              ProvisionedConcurrentExecutions=3)
    spec = lambda_runner.function_from_emulator("breedops-test-provisioned", tmp_path / "f",
                                                zip_fallback=tmp_path / "l.zip")
    assert spec.provisioned_concurrency == 3
    assert spec.reserved_concurrency is None
