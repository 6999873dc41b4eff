"""The Lambda against a SageMaker Runtime that misbehaves on the wire: a real server on 127.0.0.1
that answers garbage, hangs, cuts the connection or the body, or relays the model's refusal.

Every failure must come back as an API Gateway proxy response with the right status, the request
id and a generic message (AWS's and the model's internals stay out of the body), with the detail
in the invocation's log line, and within the function's timeout, retries included.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
# The function's timeout in these tests: the handler sizes its retries and read timeout from it.
FUNCTION_TIMEOUT_S = 6.0
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/breedops-lambda"
TRACEBACK = 'Traceback (most recent call last):\n  File "/opt/ml/model/code/inference.py"'
PREDICTIONS = {"model_version": "v1", "predictions": [
    {"label": "002.Afghan_hound", "index": 1, "probability": 0.9}]}


class Context:
    """A Lambda context: the request id, and the time left before the function's deadline."""

    def __init__(self, timeout_s: float = FUNCTION_TIMEOUT_S) -> None:
        self.aws_request_id = "req-fault-1"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def http_reply(status: int, body: bytes, headers: dict[str, str] | None = None,
               content_length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
             f"Content-Length: {len(body) if content_length is None else content_length}",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def model_error(status: int, original: str) -> bytes:
    """InvokeEndpoint's ModelError as SageMaker sends it: AWS's message names the account."""
    fields = {"message": f"Received client error ({status}) from primary with message "
                         f'"{original}". See the log group in account {ACCOUNT}.',
              "OriginalStatusCode": status, "OriginalMessage": original,
              "LogStreamArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/x"}
    return http_reply(424, json.dumps(fields).encode(), {"x-amzn-ErrorType": "ModelError"})


class FaultyRuntime(socketserver.BaseRequestHandler):
    """Reads one InvokeEndpoint request, then does what the endpoint's name says, at the byte
    level (a closed socket is a closed socket, not an error response)."""

    def handle(self) -> None:
        request = self._read_request()
        if request is None:
            return
        name = request.split(b" ", 2)[1].decode().split("/")[2]
        self.server.calls.append(name)
        sock = self.request
        if name == "garbage":
            sock.sendall(http_reply(200, b"<html>502 Bad Gateway</html>"))
        elif name == "wrong-shape":
            sock.sendall(http_reply(200, b'{"predictions": "none"}'))
        elif name == "hang":
            self.server.release.wait(30)
        elif name == "stall-body":
            sock.sendall(http_reply(200, b'{"model_version": "v1", "pred', content_length=500))
            self.server.release.wait(30)
        elif name == "cut-body":
            sock.sendall(http_reply(200, b'{"model_version": "v1", "pred', content_length=500))
        elif name == "close":
            pass  # hang up without a byte
        elif name == "rejects":
            verdict = json.dumps({"error": "InvalidRequestError",
                                  "message": "the body is not a decodable image (JPEG or PNG)"})
            sock.sendall(model_error(400, f"{verdict}\n{TRACEBACK}"))
        elif name == "crashes":
            sock.sendall(model_error(500, f"CUDA error: out of memory\n{TRACEBACK}"))
        elif name == "denied":
            message = (f"User: {ROLE_ARN}/breedops is not authorized to perform: "
                       f"sagemaker:InvokeEndpoint on resource: arn:aws:sagemaker:us-east-1:"
                       f"{ACCOUNT}:endpoint/denied")
            sock.sendall(http_reply(400, json.dumps({"message": message}).encode(),
                                    {"x-amzn-ErrorType": "AccessDeniedException"}))
        else:
            sock.sendall(http_reply(200, json.dumps(PREDICTIONS).encode()))
        sock.shutdown(socket.SHUT_RDWR)

    def _read_request(self) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += self.request.recv(65536)
        return head


@pytest.fixture
def runtime() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), FaultyRuntime)
    server.daemon_threads = True
    server.calls, server.release = [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def lambda_for(monkeypatch, runtime) -> Callable[[str], ModuleType]:
    """The real handler module, imported fresh for one endpoint name, its SageMaker Runtime
    client pointed at the faulty server through the standard endpoint variable."""
    monkeypatch.syspath_prepend(str(ROOT / "lambda"))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "CONNECT_TIMEOUT_SECONDS": "0.5",
                        "FUNCTION_TIMEOUT_SECONDS": str(FUNCTION_TIMEOUT_S),
                        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{runtime.server_address[1]}",
                        }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", raising=False)
    monkeypatch.delenv("MAX_ATTEMPTS", raising=False)  # the handler's own default: 2

    def load(endpoint: str) -> ModuleType:
        monkeypatch.setenv("ENDPOINT_NAME", endpoint)
        sys.modules.pop("breedops_lambda.handler", None)
        return importlib.import_module("breedops_lambda.handler")

    return load


def jpeg() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def invoke(handler: ModuleType, caplog) -> tuple[int, dict, dict, float]:
    """(status, body, the invocation's log line, seconds taken) for an API Gateway event."""
    event = {"body": jpeg(), "isBase64Encoded": True, "headers": {"Content-Type": "image/jpeg"},
             "requestContext": {"requestId": "apigw-1"}}
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        response = handler.lambda_handler(event, Context())
    elapsed = time.monotonic() - started
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.getMessage().startswith('{"message": "invocation"')]
    assert len(lines) == 1
    assert response["headers"] == {"Content-Type": "application/json"}
    return response["statusCode"], json.loads(response["body"]), lines[0], elapsed


FAULTS = [
    # (endpoint, status, error code, body message, what the log's detail names)
    ("garbage", 502, "BadEndpointResponse", "the classifier gave an unreadable answer",
     "502 Bad Gateway"),
    ("wrong-shape", 502, "BadEndpointResponse", "the classifier gave an unreadable answer",
     "predictions"),
    ("hang", 504, "EndpointTimeout", "the classifier did not answer in time", "Read timeout"),
    ("stall-body", 504, "EndpointTimeout", "the classifier did not answer in time",
     "Read timeout"),
    ("cut-body", 502, "EndpointError", "the classifier failed", "IncompleteRead"),
    ("close", 502, "EndpointUnavailable", "the classifier cannot be reached",
     "Connection was closed"),
    ("rejects", 400, "ImageRejected",
     "the model rejected the image: the body is not a decodable image (JPEG or PNG)",
     "InvalidRequestError"),
    ("crashes", 502, "ModelError", "the model failed to classify the image", "CUDA error"),
    ("denied", 502, "EndpointError", "the classifier failed", ROLE_ARN),
]


@pytest.mark.parametrize(("endpoint", "status", "code", "message", "detail"), FAULTS,
                         ids=[fault[0] for fault in FAULTS])
def test_lambda_endpoint_fault_gets_proxy_response(lambda_for, runtime, caplog, endpoint,
                                                   status, code, message, detail):
    status_got, body, line, elapsed = invoke(lambda_for(endpoint), caplog)
    assert (status_got, body["error"], body["message"]) == (status, code, message), body
    assert body["request_id"] == "req-fault-1"
    text = json.dumps(body)
    for leak in (ACCOUNT, "arn:aws", "Traceback", "127.0.0.1", "CUDA"):
        assert leak not in text, f"{leak!r} leaked into the response: {text}"
    # The operator's side: one log line with the status, the code and the real cause.
    assert (line["request_id"], line["status"], line["error"]) == ("req-fault-1", status, code)
    assert detail in line["detail"], line
    assert elapsed < FUNCTION_TIMEOUT_S - 1, f"{elapsed:.1f} s: past the function's budget"


def test_lambda_hung_endpoint_retries_within_the_function_timeout(lambda_for, runtime, caplog):
    """A hung model gets the retry the budget allows, and the answer still beats Lambda's own
    timeout (after which API Gateway would answer a bare 502 and nothing would be logged)."""
    status, _, line, elapsed = invoke(lambda_for("hang"), caplog)
    assert status == 504
    assert runtime.calls == ["hang", "hang"], "the budget for 6 s has room for one retry"
    attempts, connect, read = sys.modules["breedops_lambda.handler"].call_budget(6)
    assert (attempts, connect, read) == (2, 0.5, 1.5)
    assert 2 * read <= elapsed < FUNCTION_TIMEOUT_S - 1
    assert line["latency_ms"] < (FUNCTION_TIMEOUT_S - 1) * 1000


def test_lambda_refused_connection_gets_502(lambda_for, runtime, caplog, monkeypatch):
    with socket.socket() as unused:  # a port that was free a moment ago: nothing listens
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    status, body, line, _ = invoke(lambda_for("ok"), caplog)
    assert (status, body["error"], body["request_id"]) == (502, "EndpointUnavailable",
                                                           "req-fault-1")
    assert "127.0.0.1" not in json.dumps(body) and "Could not connect" in line["detail"]


def test_lambda_healthy_endpoint_answers_200(lambda_for, runtime, caplog):
    status, body, line, _ = invoke(lambda_for("ok"), caplog)
    assert status == 200 and body["predictions"][0]["breed"] == "Afghan hound"
    assert "error" not in line and runtime.calls == ["ok"]
