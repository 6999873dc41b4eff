"""The Lambda handler: every bad input and every endpoint failure gets its status and message."""

from __future__ import annotations

import json
import logging

import pytest

from .conftest import b64, image_bytes, load_event


class Context:
    aws_request_id = "req-1"


def call(handler, event) -> tuple[int, dict]:
    response = handler.lambda_handler(event, Context())
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("event_name", ["apigw_binary_image.json", "direct_invocation.json"])
def test_lambda_handler_valid_image_returns_readable_breeds(load_handler, event_name):
    handler = load_handler(ENDPOINT_NAME="ok", TOP_K="2")
    image = b64(image_bytes())
    event = load_event(event_name, **({"body": image} if "apigw" in event_name
                                      else {"image": image}))
    status, body = call(handler, event)
    assert status == 200
    assert body["model_version"] == "stub-1"
    assert [p["breed"] for p in body["predictions"]] == ["Afghan hound", "Affenpinscher"]
    assert body["predictions"][0]["probability"] == 0.7
    assert body["request_id"] == "req-1"


def test_lambda_handler_json_body_event_sends_sniffed_type_and_top_k(load_handler, stub_runtime):
    handler = load_handler(ENDPOINT_NAME="ok", TOP_K="3")
    event = load_event("apigw_json_body.json",
                       body=json.dumps({"image": b64(image_bytes("RGBA", "PNG"))}))
    status, _ = call(handler, event)
    assert status == 200
    sent = {k.lower(): v for k, v in stub_runtime.requests[-1].items()}
    assert sent["content-type"] == "image/png"
    assert sent["x-amzn-sagemaker-custom-attributes"] == "top_k=3"


def test_lambda_handler_writes_one_json_log_line(load_handler, caplog):
    handler = load_handler(ENDPOINT_NAME="ok")
    with caplog.at_level(logging.INFO):
        call(handler, {"image": b64(image_bytes())})
    lines = [json.loads(r.getMessage()) for r in caplog.records if "invocation" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0]["status"] == 200 and lines[0]["top_class"] == "Afghan hound"
    assert lines[0]["request_id"] == "req-1" and lines[0]["latency_ms"] > 0


BAD_REQUESTS = [
    ("empty body", load_event("apigw_binary_image.json", body=""), 400, "body is empty"),
    ("invalid base64", {"image": "not base64!!"}, 400, "not valid base64"),
    ("unknown fields", {"image": b64(image_bytes()), "size": 3}, 400, "unknown field(s): size"),
    ("missing image", {"picture": "x"}, 400, '{"image": "<base64>"}'),
    ("image not a string", {"image": 42}, 400, "non-empty base64 string"),
    ("event not an object", ["image"], 400, "must be a JSON object"),
    ("invalid JSON body", load_event("apigw_json_body.json", body="{oops"), 400, "not valid JSON"),
    ("wrong content type", load_event("apigw_binary_image.json", body=b64(b"a,b"),
                                      headers={"Content-Type": "text/csv"}),
     415, "unsupported content type 'text/csv'"),
    ("not a JPEG or PNG", {"image": b64(image_bytes(fmt="GIF"))}, 415, "neither a JPEG nor a PNG"),
    ("binary body as text", load_event("apigw_binary_image.json", body="\u20ac", isBase64Encoded=False),
     400, "binary media types"),
    ("oversized payload", {"image": "A" * (6 * 1024 * 1024 + 4)}, 413, "the limit is 6291456"),
    ("oversized binary body", load_event("apigw_binary_image.json",
                                         body="A" * (6 * 1024 * 1024 + 4)), 413, "limit"),
]


@pytest.mark.parametrize(("case", "event", "status", "message"), BAD_REQUESTS,
                         ids=[case[0] for case in BAD_REQUESTS])
def test_lambda_handler_bad_request_gets_status_and_message(load_handler, stub_runtime, case,
                                                             event, status, message):
    handler = load_handler(ENDPOINT_NAME="ok")
    calls = len(stub_runtime.requests)
    got_status, body = call(handler, event)
    assert (got_status, message in body["message"]) == (status, True), body
    assert len(stub_runtime.requests) == calls, "a bad request must not reach the endpoint"


ENDPOINT_FAILURES = [
    ("missing", 503, "EndpointUnavailable", "the classifier is unavailable"),
    ("model-error", 502, "ModelError", "the model failed to classify the image"),
    ("rejects", 400, "ImageRejected", "the model rejected the image: truncated image"),
    ("throttled", 429, "Throttled", "busy"),
    ("unavailable", 503, "EndpointUnavailable", "unavailable"),
    ("slow", 504, "EndpointTimeout", "did not answer in time"),
]


@pytest.mark.parametrize(("endpoint", "status", "code", "message"), ENDPOINT_FAILURES)
def test_lambda_handler_endpoint_failure_gets_status(load_handler, caplog, endpoint, status,
                                                     code, message):
    handler = load_handler(ENDPOINT_NAME=endpoint)
    with caplog.at_level(logging.INFO):
        got_status, body = call(handler, {"image": b64(image_bytes())})
    assert (got_status, body["error"], body["request_id"]) == (status, code, "req-1"), body
    assert message in body["message"]
    # AWS's own message stays in the log: it names accounts, roles and the model's internals.
    for secret in ("123456789012", "CUDA", "Rate exceeded", "Service unavailable", "Traceback"):
        assert secret not in json.dumps(body)
    line = next(json.loads(r.getMessage()) for r in caplog.records
                if "invocation" in r.getMessage())
    assert line["status"] == status and line["error"] == code and line["detail"]


def test_lambda_handler_budget_fits_the_function_timeout(load_handler):
    handler = load_handler(MAX_ATTEMPTS="2", CONNECT_TIMEOUT_SECONDS="2")
    for timeout in (10, 30, 60):
        attempts, connect, read = handler.call_budget(timeout)
        worst = attempts * (connect + read) + sum(2 ** n for n in range(attempts - 1))
        assert attempts == 2 and read >= 1 and worst <= timeout - max(1, timeout / 10)
    assert handler.call_budget(30) == (2, 2, 11)
    assert handler.call_budget(4)[0] == 1  # no room for a retry: one attempt gets it all


def test_lambda_handler_unreachable_endpoint_gives_502(load_handler, monkeypatch):
    handler = load_handler(ENDPOINT_NAME="ok",
                           AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME="http://127.0.0.1:9")
    status, body = call(handler, {"image": b64(image_bytes())})
    assert status == 502 and "cannot be reached" in body["message"]


def test_lambda_handler_without_endpoint_name_gives_503(load_handler, monkeypatch):
    monkeypatch.delenv("ENDPOINT_NAME", raising=False)
    handler = load_handler()
    status, body = call(handler, {"image": b64(image_bytes())})
    assert status == 503 and body["message"] == "the classifier is not configured"


@pytest.mark.parametrize(("label", "name"), [
    ("001.Affenpinscher", "Affenpinscher"), ("002.Afghan_hound", "Afghan hound"),
    ("7", "7"), ("no_prefix", "no prefix"),
])
def test_readable_name_strips_index_and_underscores(load_handler, label, name):
    assert load_handler(ENDPOINT_NAME="ok").readable_name(label) == name
