"""The Lambda package: built reproducibly, and invoked through the emulator by `breedops invoke`."""

from __future__ import annotations

import json
import zipfile

import pytest
from hosted_model import LABELS, image_bytes

from breedops.serving.lambda_package import build_lambda_zip

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


def test_invoke_command_prints_report_lines_and_summary(deployed_function, tmp_path, capsys):
    from breedops.cli import main

    image = tmp_path / "dog.png"
    image.write_bytes(image_bytes("RGBA", "PNG"))
    assert main(["invoke", "--image", str(image), "--function", deployed_function,
                 "--qualifier", "live", "--concurrency", "2", "--requests", "3"]) == 0
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
