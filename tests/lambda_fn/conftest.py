"""Fixtures for the Lambda: its handler loaded with a chosen environment, events, and a stub
SageMaker Runtime that answers each endpoint name with one canned outcome on the wire."""

from __future__ import annotations

import base64
import copy
import importlib
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
PREDICTIONS = {"model_version": "stub-1", "predictions": [
    {"label": "002.Afghan_hound", "index": 1, "probability": 0.7},
    {"label": "001.Affenpinscher", "index": 0, "probability": 0.2},
    {"label": "003.Airedale_terrier", "index": 2, "probability": 0.1},
]}


def image_bytes(mode: str = "RGB", fmt: str = "JPEG", size: tuple[int, int] = (40, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def load_event(name: str, **fields) -> dict:
    event = copy.deepcopy(json.loads((EVENTS / name).read_text()))
    event.update(fields)
    return event


class StubRuntime(BaseHTTPRequestHandler):
    """InvokeEndpoint answers chosen by endpoint name, in botocore's restJson error shapes."""

    protocol_version = "HTTP/1.1"
    OUTCOMES: ClassVar[dict[str, tuple[int, str, dict]]] = {
        "missing": (400, "ValidationError",
                    {"message": "Endpoint missing of account 123456789012 not found."}),
        "model-error": (424, "ModelError", {"message": "Received server error (500)",
                                            "OriginalStatusCode": 500,
                                            "OriginalMessage": '{"message": "CUDA exploded"}'}),
        # The toolkit's error body: the handler's one-line verdict, then the traceback.
        "rejects": (424, "ModelError", {
            "message": "Received client error (400)", "OriginalStatusCode": 400,
            "OriginalMessage": '{"error": "InvalidRequestError", "message": "truncated image"}\n'
                               'Traceback (most recent call last):\n  File "/opt/ml/model/code'
                               '/inference.py", line 9'}),
        "throttled": (429, "ThrottlingException", {"message": "Rate exceeded"}),
        "unavailable": (503, "ServiceUnavailable", {"message": "Service unavailable"}),
    }

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        name = self.path.split("/")[2]
        self.server.requests.append(dict(self.headers))
        if name == "slow":
            time.sleep(2)
        if name in self.OUTCOMES:
            status, code, fields = self.OUTCOMES[name]
            self._send(status, json.dumps(fields).encode(), {"x-amzn-ErrorType": code})
        else:
            self._send(200, json.dumps(PREDICTIONS).encode(), {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except ConnectionError:
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def stub_runtime() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubRuntime)
    server.daemon_threads = True
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def load_handler(monkeypatch, stub_runtime) -> Callable[..., ModuleType]:
    """Import the handler afresh with ENDPOINT_NAME and friends set, against the stub."""
    monkeypatch.syspath_prepend(str(ROOT / "lambda"))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "MAX_ATTEMPTS": "1",
                        "FUNCTION_TIMEOUT_SECONDS": "3", "CONNECT_TIMEOUT_SECONDS": "0.5",
                        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME":
                            f"http://127.0.0.1:{stub_runtime.server_address[1]}"}.items():
        monkeypatch.setenv(name, value)

    def load(**env: str) -> ModuleType:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("breedops_lambda.handler", None)
        return importlib.import_module("breedops_lambda.handler")

    return load
