"""Lambda `Invoke` served by the emulator: the function runs locally, as its role, with its
concurrency, and answers as Lambda does to boto3 and to the AWS CLI."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.emulator

ACCOUNT, REGION = "123456789012", "us-east-1"
TRUST_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}
HANDLERS = '''
import json, os, time, logging
import boto3

logging.getLogger().setLevel(logging.INFO)
print("initialising")


def echo(event, context):
    print("echo " + json.dumps(event))
    logging.info("answered %s", context.aws_request_id)
    return {"event": event, "request_id": context.aws_request_id,
            "version": context.function_version, "arn": context.invoked_function_arn,
            "greeting": os.environ.get("GREETING")}


def boom(event, context):
    raise ValueError("the test asked for an error")


def whoami(event, context):
    return boto3.client("sts").get_caller_identity()["Arn"]


def sleepy(event, context):
    time.sleep(event.get("seconds", 1))
    return {"slept": event.get("seconds", 1)}
'''


def client(**config) -> object:
    """A Lambda client that never retries: a throttle must reach the test as the 429 it is."""
    return boto3.client("lambda", config=Config(retries={"total_max_attempts": 1},
                                                read_timeout=60, **config))


def code_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def lambda_role(name: str, function: str) -> str:
    """A role Lambda may assume, allowed to write the function's log, as the iam module's."""
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName=f"{name}-role",
                          AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))["Role"]["Arn"]
    iam.put_role_policy(RoleName=f"{name}-role", PolicyName="logs", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{function}"
                        ":log-stream:*"}]}))
    return arn


def deploy(name: str, handler: str, files: dict[str, str] | None = None, alias: bool = True,
           **settings) -> str:
    """The function as Terraform deploys it: its role, its log group, version 1, alias live."""
    role = lambda_role(name, name)
    boto3.client("logs").create_log_group(logGroupName=f"/aws/lambda/{name}")
    lam = boto3.client("lambda")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler=handler,
                        Code={"ZipFile": code_zip(files or {"fn.py": HANDLERS})},
                        Publish=True, **settings)
    if alias:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


def invoke(name: str, payload: object = None, **kwargs) -> tuple[dict, object]:
    response = client().invoke(FunctionName=name, Payload=json.dumps(payload or {}), **kwargs)
    return response, json.loads(response["Payload"].read() or b"null")


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return (response["Error"]["Code"], response["Error"]["Message"],
            response["ResponseMetadata"]["HTTPStatusCode"])


def log_tail(response: dict) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def wait_for_log(function: str, wanted, count: int = 1, timeout_s: float = 15) -> list[str]:
    """The messages of /aws/lambda/<function> that `wanted` accepts, once there are `count`."""
    logs, deadline = boto3.client("logs"), time.monotonic() + timeout_s
    while True:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}")["events"]
        found = [e["message"] for e in events if wanted(e["message"])]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"not in /aws/lambda/{function}: {events}"
        time.sleep(0.2)


# -- qualifiers, results and errors -------------------------------------------------------------


def test_invoke_alias_version_and_latest_run_their_own_configuration(function_with_alias):
    name = function_with_alias
    lam = boto3.client("lambda")
    lam.update_function_configuration(FunctionName=name,
                                      Environment={"Variables": {"GREETING": "new"}})

    by_alias, alias_payload = invoke(name, {"n": 1}, Qualifier="live")
    by_version, version_payload = invoke(name, {"n": 2}, Qualifier="1")
    latest, latest_payload = invoke(name, {"n": 3})

    assert (by_alias["StatusCode"], by_alias["ExecutedVersion"], alias_payload) == (200, "1",
                                                                                    {"n": 1})
    assert (by_version["ExecutedVersion"], version_payload) == ("1", {"n": 2})
    assert (latest["ExecutedVersion"], latest_payload) == ("$LATEST", {"n": 3})
    assert "FunctionError" not in by_alias


def test_invoke_sees_context_and_configuration_of_the_version(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.echo", Environment={"Variables": {"GREETING": "v1"}})
    boto3.client("lambda").update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "latest"}})

    response, payload = invoke(name, {"x": 1}, Qualifier="live")
    _, latest = invoke(name, {"x": 2})

    assert payload["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert payload["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:live"
    assert (payload["version"], payload["greeting"], payload["event"]) == ("1", "v1", {"x": 1})
    assert (latest["version"], latest["greeting"]) == ("$LATEST", "latest")


def test_invoke_unknown_qualifier_raises_resource_not_found(function_with_alias):
    with pytest.raises(ClientError) as excinfo:
        invoke(function_with_alias, Qualifier="nope")

    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        (f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
         f"{function_with_alias}:nope"), 404)


def test_invoke_unhandled_exception_answers_the_runtime_error(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.boom")

    response, payload = invoke(name, Qualifier="live")

    assert (response["StatusCode"], response["FunctionError"]) == (200, "Unhandled")
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "the test asked for an error"
    assert payload["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert any("raise ValueError" in frame for frame in payload["stackTrace"])


def test_invoke_past_the_timeout_is_sandbox_timedout(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.sleepy", Timeout=1)

    response, payload = invoke(name, {"seconds": 5}, Qualifier="live", LogType="Tail")

    assert response["FunctionError"] == "Unhandled"
    assert payload == {"errorType": "Sandbox.Timedout",
                       "errorMessage": f"RequestId: {response['ResponseMetadata']['RequestId']}"
                                       " Error: Task timed out after 1.00 seconds"}
    assert "Status: timeout" in log_tail(response).splitlines()[-1]


def test_invoke_event_runs_in_the_background_and_dry_run_only_checks(aws_emulator,
                                                                      unique_name):
    name = deploy(unique_name, "fn.echo")

    event = client().invoke(FunctionName=name, InvocationType="Event", Qualifier="live",
                            Payload=b'{"async": 1}')
    legacy = client().invoke_async(FunctionName=name, InvokeArgs=b'{"async": 2}')
    dry_run = client().invoke(FunctionName=name, InvocationType="DryRun", Qualifier="live")

    assert (event["StatusCode"], event["Payload"].read()) == (202, b"")
    assert legacy["Status"] == 202
    assert dry_run["StatusCode"] == 204
    printed = wait_for_log(name, lambda m: m in ('echo {"async": 1}', 'echo {"async": 2}'), 2)
    assert sorted(printed) == ['echo {"async": 1}', 'echo {"async": 2}']


def test_invoke_bad_json_payload_raises_invalid_request_content(function_with_alias):
    with pytest.raises(ClientError) as excinfo:
        client().invoke(FunctionName=function_with_alias, Payload=b"{not json")

    assert error_of(excinfo)[0::2] == ("InvalidRequestContentException", 400)


# -- logs and identity --------------------------------------------------------------------------


def test_invoke_log_tail_ends_with_report_and_lines_reach_cloudwatch(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.echo")

    response, _ = invoke(name, {"hello": "logs"}, Qualifier="live", LogType="Tail")

    request_id = response["ResponseMetadata"]["RequestId"]
    lines = log_tail(response).splitlines()
    assert f"START RequestId: {request_id} Version: 1" in lines
    assert 'echo {"hello": "logs"}' in lines
    assert f"END RequestId: {request_id}" in lines
    assert re.match(rf"REPORT RequestId: {request_id}\tDuration: [0-9.]+ ms\tBilled Duration: "
                    r"\d+ ms\tMemory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: ",
                    lines[-1])
    wait_for_log(name, lambda m: m.startswith(f"REPORT RequestId: {request_id}"))
    events = boto3.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    messages = [e["message"] for e in events]
    assert messages.index(f"START RequestId: {request_id} Version: 1") < messages.index(
        'echo {"hello": "logs"}') < messages.index(f"END RequestId: {request_id}")
    assert all(re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[1\][0-9a-f]{32}", e["logStreamName"])
               for e in events)


def test_function_runs_as_its_role(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.whoami")

    _, identity = invoke(name, Qualifier="live")

    assert identity == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}-role/{name}"


def test_invoke_needs_invoke_function_on_the_qualified_arn(function_with_alias, unique_name):
    iam = boto3.client("iam")
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_with_alias}"
    clients = {}
    for suffix, resource in (("plain", arn), ("any", f"{arn}:*")):
        user = f"{unique_name}-{suffix}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="invoke", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": resource}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        clients[suffix] = boto3.client(
            "lambda", aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            config=Config(retries={"total_max_attempts": 1}))

    unqualified = clients["plain"].invoke(FunctionName=function_with_alias, Payload=b"{}")
    qualified = clients["any"].invoke(FunctionName=function_with_alias, Qualifier="live",
                                      Payload=b"{}")
    with pytest.raises(ClientError) as excinfo:
        clients["plain"].invoke(FunctionName=function_with_alias, Qualifier="live",
                                Payload=b"{}")

    assert unqualified["StatusCode"] == qualified["StatusCode"] == 200
    code, message, status = error_of(excinfo)
    assert (code, status) == ("AccessDeniedException", 403)
    assert message == (f"User: arn:aws:iam::{ACCOUNT}:user/{unique_name}-plain is not "
                       f"authorized to perform: lambda:InvokeFunction on resource: {arn}:live")


# -- concurrency --------------------------------------------------------------------------------


def test_reserved_concurrency_throttles_the_excess_and_loses_nothing(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.sleepy")
    boto3.client("lambda").put_function_concurrency(FunctionName=name,
                                                    ReservedConcurrentExecutions=10)
    lam = client(max_pool_connections=20)
    barrier = threading.Barrier(20)

    def call(_: int) -> tuple[int, str, str]:
        barrier.wait()
        try:
            response = lam.invoke(FunctionName=name, Qualifier="live",
                                  Payload=json.dumps({"seconds": 1}))
            return response["StatusCode"], json.loads(response["Payload"].read())["slept"], ""
        except ClientError as e:
            answer = e.response
            return (answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"],
                    f"{answer['Error']['Message']}|{answer.get('Reason')}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(call, i) for i in range(20)]
        results = [future.result(timeout=60) for future in futures]

    accepted = [r for r in results if r[0] == 200]
    throttled = [r for r in results if r[0] == 429]
    assert len(accepted) + len(throttled) == 20, results
    assert 1 <= len(accepted) <= 10 and len(throttled) >= 10
    assert all(r[1] == 1 for r in accepted)
    assert set(throttled) == {(429, "TooManyRequestsException",
                               "Rate Exceeded.|ReservedFunctionConcurrentInvocationLimitExceeded")}


def test_a_running_invocation_blocks_neither_others_nor_the_api(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.sleepy")
    invoke(name, {"seconds": 0}, Qualifier="live")  # warm one environment
    lam = client(max_pool_connections=4)

    def sleep(seconds: float) -> float:
        started = time.monotonic()
        lam.invoke(FunctionName=name, Qualifier="live", Payload=json.dumps({"seconds": seconds}))
        return time.monotonic() - started

    with ThreadPoolExecutor(max_workers=3) as pool:
        started = time.monotonic()
        sleepers = [pool.submit(sleep, 2) for _ in range(2)]
        time.sleep(0.3)
        api_started = time.monotonic()
        boto3.client("lambda").get_function(FunctionName=name)
        api_seconds = time.monotonic() - api_started
        [future.result(timeout=30) for future in sleepers]
        both_seconds = time.monotonic() - started

    assert api_seconds < 1.5  # not queued behind an invocation (the journal's lock is free)
    assert both_seconds < 2 * 2  # side by side, not one after the other


def test_provisioned_concurrency_serves_the_first_invoke_warm(aws_emulator, unique_name):
    name = deploy(unique_name, "fn.echo")
    boto3.client("lambda").put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)

    response, _ = invoke(name, Qualifier="live", LogType="Tail")

    report = log_tail(response).splitlines()[-1]
    assert report.startswith(f"REPORT RequestId: {response['ResponseMetadata']['RequestId']}")
    assert "Init Duration" not in report


def test_reserved_concurrency_floor_refuses_what_leaves_under_100(function_with_alias):
    lam = boto3.client("lambda")
    settings = lam.get_account_settings()["AccountLimit"]

    with pytest.raises(ClientError) as excinfo:
        lam.put_function_concurrency(FunctionName=function_with_alias,
                                     ReservedConcurrentExecutions=settings[
                                         "UnreservedConcurrentExecutions"] - 99)

    assert settings["ConcurrentExecutions"] == 1000
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        ("Specified ReservedConcurrentExecutions for function decreases account's "
         "UnreservedConcurrentExecution below its minimum value of [100]."), 400)
    lam.put_function_concurrency(FunctionName=function_with_alias,
                                 ReservedConcurrentExecutions=2)
    after = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == settings["UnreservedConcurrentExecutions"] - 2


# -- the AWS CLI and the project's own function -------------------------------------------------

PREDICTIONS = {"model_version": "stub-1", "predictions": [
    {"label": "002.Afghan_hound", "index": 1, "probability": 0.7},
    {"label": "001.Affenpinscher", "index": 0, "probability": 0.3}]}


class _StubRuntime(BaseHTTPRequestHandler):
    """SageMaker Runtime's InvokeEndpoint, answering every endpoint with PREDICTIONS."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(PREDICTIONS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub_runtime():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubRuntime)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_aws_cli_invokes_the_project_function_through_its_alias(aws_emulator, unique_name,
                                                                stub_runtime, tmp_path):
    from breedops.serving.lambda_package import build_lambda_zip

    package = build_lambda_zip(target=tmp_path / "lambda.zip")
    role = lambda_role(unique_name, unique_name)
    lam = boto3.client("lambda")
    lam.create_function(
        FunctionName=unique_name, Runtime="python3.12", Role=role,
        Handler="breedops_lambda.handler.lambda_handler",
        Code={"ZipFile": package.read_bytes()}, Publish=True, MemorySize=256, Timeout=30,
        Environment={"Variables": {"ENDPOINT_NAME": "tiny", "TOP_K": "2",
                                   # where local hosting would be: the stub, for this test
                                   "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": stub_runtime}})
    lam.create_alias(FunctionName=unique_name, Name="live", FunctionVersion="1")
    image = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 64).decode()
    out = tmp_path / "out.json"

    # AWS CLI v1 (this project's) sends --payload as it is; v2 needs
    # --cli-binary-format raw-in-base64-out for the same.
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "aws"), "lambda", "invoke", "--function-name",
         unique_name, "--qualifier", "live", "--payload", json.dumps({"image": image}),
         str(out), "--output", "json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stderr
    answer = json.loads(cli.stdout)

    assert (answer["StatusCode"], answer["ExecutedVersion"]) == (200, "1")
    assert "FunctionError" not in answer
    response = json.loads(out.read_text())
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert [p["label"] for p in body["predictions"]] == ["002.Afghan_hound", "001.Affenpinscher"]
