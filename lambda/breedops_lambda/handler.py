"""Classify a dog photo: validate the request, call the SageMaker endpoint, name the breeds.

Accepts API Gateway proxy events (a binary body, or a JSON body `{"image": "<base64>"}`) and
direct invocations `{"image": "<base64>"}`. Always answers in the proxy shape
(`statusCode`, `headers`, `body`), with a JSON error and the right status for every failure,
and writes one structured JSON log line per invocation.

Only boto3 and the standard library: the Lambda runtime provides both, so the package stays a
few kilobytes and needs no layer; the top-k arrives already sorted from the endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

ENDPOINT_NAME = os.environ.get("ENDPOINT_NAME", "")
TOP_K = int(os.environ.get("TOP_K", "3"))
# The function's timeout when the invocation's context cannot tell it: the default of the
# inference_lambda module's `timeout_seconds`.
FUNCTION_TIMEOUT_SECONDS = float(os.environ.get("FUNCTION_TIMEOUT_SECONDS", "30"))
CONNECT_TIMEOUT_SECONDS = float(os.environ.get("CONNECT_TIMEOUT_SECONDS", "2"))
MAX_ATTEMPTS = int(os.environ.get("MAX_ATTEMPTS", "2"))
# Lambda's synchronous payload limit, measured on the request as it arrives (after base64).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
ALLOWED_FIELDS = {"image"}
# Content types an API Gateway client may send; images are sniffed, not trusted by header.
ACCEPTED_REQUEST_TYPES = ("application/json", "application/octet-stream", "image/jpeg",
                          "image/png", "application/x-image")
# Statuses of the model's own verdicts on an image that the caller gets as they are.
MODEL_CLIENT_STATUSES = (400, 413, 415)

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
# botocore logs every credential and endpoint lookup at INFO: noise in one line per invocation.
logging.getLogger("botocore").setLevel(logging.WARNING)


def call_budget(function_timeout_s: float) -> tuple[int, float, float]:
    """(attempts, connect timeout, read timeout) whose worst case ends inside the function.

    Worst case of one InvokeEndpoint = attempts x (connect + read) + the waits between attempts
    (botocore's standard mode waits at most 2^(n-1) s before retry n: 1 s, then 2 s, ...), and it
    must leave a margin (10 %, at least 1 s) to read the answer, log and respond. Everything left
    goes to the read timeout: the model's time to answer. For the 30 s default:
    margin 3 s, 2 attempts, 1 s backoff -> read = (30 - 3 - 1) / 2 - 2 = 11 s, worst case
    2 x (2 + 11) + 1 = 27 s. A timeout too short for a retry gets one attempt.
    """
    margin = max(1.0, 0.1 * function_timeout_s)
    attempts = max(MAX_ATTEMPTS, 1)
    while True:
        backoff = sum(min(2 ** n, 20) for n in range(attempts - 1))
        read = (function_timeout_s - margin - backoff) / attempts - CONNECT_TIMEOUT_SECONDS
        if read >= 1.0 or attempts == 1:
            return attempts, CONNECT_TIMEOUT_SECONDS, max(read, 0.5)
        attempts -= 1


def runtime_client(function_timeout_s: float) -> Any:
    """The SageMaker Runtime client sized for this timeout, made once per execution environment
    (and per timeout, should the deployed timeout differ from FUNCTION_TIMEOUT_SECONDS)."""
    key = math.ceil(function_timeout_s)
    if key not in _CLIENTS:
        attempts, connect, read = call_budget(key)
        _CLIENTS[key] = boto3.client("sagemaker-runtime", config=Config(
            connect_timeout=connect, read_timeout=read,
            # total_max_attempts counts the first try; botocore's max_attempts counts retries.
            retries={"total_max_attempts": attempts, "mode": "standard"},
        ))
    return _CLIENTS[key]


_CLIENTS: dict[int, Any] = {}
# Made during the cold start (ahead of traffic with provisioned concurrency), not per request.
runtime_client(FUNCTION_TIMEOUT_SECONDS)


class RequestError(Exception):
    """An invocation that ends with `status` and a message the caller can act on; `detail` is
    for the log only (AWS messages name accounts and roles)."""

    def __init__(self, status: int, code: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.detail = status, code, detail


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The entry point: one request, one response, one log line."""
    started = time.perf_counter()
    request_id = getattr(context, "aws_request_id", "-")
    top_class, failure = None, {}
    try:
        image, content_type = parse_event(event)
        answer = classify(image, content_type, _function_timeout(context))
        top_class = answer["predictions"][0]["breed"] if answer["predictions"] else None
        status, body = 200, {**answer, "request_id": request_id}
    except RequestError as e:
        status, body = e.status, {"error": e.code, "message": str(e), "request_id": request_id}
        failure = {"error": e.code, **({"detail": e.detail} if e.detail else {})}
    except Exception as e:  # a bug still answers in the proxy shape, and is logged
        logger.exception("unexpected failure")
        status, body = 500, {"error": "InternalError", "message": "the classifier failed; "
                             "retry, or report the request id", "request_id": request_id}
        failure = {"error": "InternalError", "detail": f"{type(e).__name__}: {e}"}
    logger.info(json.dumps({
        "message": "invocation", "request_id": request_id, "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "top_class": top_class, "endpoint": ENDPOINT_NAME, **failure,
    }))
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body)}


def parse_event(event: Any) -> tuple[bytes, str]:
    """The image bytes and their sniffed content type, or a 400/413/415 RequestError."""
    if not isinstance(event, dict):
        raise RequestError(400, "BadRequest", "the event must be a JSON object")
    if "body" in event or "requestContext" in event:
        return _parse_proxy_event(event)
    return _parse_json_document(event)


def classify(image: bytes, content_type: str,
             function_timeout_s: float = FUNCTION_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Call the endpoint and turn its top-k into readable breed names."""
    if not ENDPOINT_NAME:
        raise RequestError(503, "EndpointUnavailable", "the classifier is not configured",
                           "ENDPOINT_NAME is not set")
    try:
        response = runtime_client(function_timeout_s).invoke_endpoint(
            EndpointName=ENDPOINT_NAME, ContentType=content_type, Accept="application/json",
            Body=image, CustomAttributes=f"top_k={TOP_K}",
        )
        raw = response["Body"].read()  # a stalled or cut body fails here, not in the call
    except ClientError as e:
        raise _endpoint_error(e) from e
    except (ReadTimeoutError, ConnectTimeoutError) as e:
        raise RequestError(504, "EndpointTimeout", "the classifier did not answer in time",
                           _detail(e)) from e
    except (ConnectionClosedError, EndpointConnectionError) as e:
        raise RequestError(502, "EndpointUnavailable", "the classifier cannot be reached",
                           _detail(e)) from e
    except BotoCoreError as e:
        raise RequestError(502, "EndpointError", "the classifier failed", _detail(e)) from e
    return _readable_answer(raw)


def _readable_answer(raw: bytes) -> dict[str, Any]:
    """The endpoint's JSON as breeds; any other reply is the endpoint's fault (502)."""
    try:
        answer = json.loads(raw)
        return {
            "model_version": answer.get("model_version"),
            "predictions": [
                {"breed": readable_name(p["label"]), "label": p["label"], "index": p["index"],
                 "probability": p["probability"]}
                for p in answer["predictions"][:TOP_K]
            ],
        }
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise RequestError(502, "BadEndpointResponse", "the classifier gave an unreadable answer",
                           f"{type(e).__name__}: {e}; reply starts {raw[:200]!r}") from e


def readable_name(label: str) -> str:
    """`"002.Afghan_hound"` -> `"Afghan hound"`: drop the index prefix, underscores to spaces."""
    prefix, dot, rest = label.partition(".")
    name = rest if dot and prefix.isdigit() and rest else label
    return name.replace("_", " ")


def _parse_proxy_event(event: dict[str, Any]) -> tuple[bytes, str]:
    body = event.get("body")
    if not body:
        raise RequestError(400, "BadRequest", "the request body is empty: send an image")
    if not isinstance(body, str):
        raise RequestError(400, "BadRequest", "the request body must be a string")
    _check_payload_size(len(body))
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type and media_type not in ACCEPTED_REQUEST_TYPES:
        raise RequestError(415, "UnsupportedMediaType",
                           f"unsupported content type {media_type!r}; send a JPEG or PNG image "
                           'or application/json {"image": "<base64>"}')
    if media_type == "application/json":
        try:
            document = json.loads(_decode_base64(body) if event.get("isBase64Encoded") else body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(400, "BadRequest", f"the body is not valid JSON: {e}") from e
        return _parse_json_document(document)
    if event.get("isBase64Encoded"):
        image = _decode_base64(body)
    else:
        try:  # API Gateway passes binary unencoded only as latin-1 text
            image = body.encode("latin-1")
        except UnicodeEncodeError as e:
            raise RequestError(400, "BadRequest", "the binary body arrived as text: enable binary "
                               "media types on the API, or send base64") from e
    return image, _sniff(image)


def _parse_json_document(document: Any) -> tuple[bytes, str]:
    if not isinstance(document, dict) or "image" not in document:
        raise RequestError(400, "BadRequest", 'send a JSON object {"image": "<base64>"}')
    unknown = sorted(set(document) - ALLOWED_FIELDS)
    if unknown:
        raise RequestError(400, "BadRequest", f"unknown field(s): {', '.join(unknown)}")
    encoded = document["image"]
    if not isinstance(encoded, str) or not encoded:
        raise RequestError(400, "BadRequest", '"image" must be a non-empty base64 string')
    _check_payload_size(len(encoded))
    image = _decode_base64(encoded)
    return image, _sniff(image)


def _check_payload_size(size: int) -> None:
    if size > MAX_PAYLOAD_BYTES:
        raise RequestError(413, "PayloadTooLarge",
                           f"the request is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes")


def _decode_base64(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, "BadRequest", f"the image is not valid base64: {e}") from e


def _sniff(image: bytes) -> str:
    """The endpoint is told the real type: a header can lie, magic bytes cannot."""
    if not image:
        raise RequestError(400, "BadRequest", "the image is empty")
    for signature, content_type in IMAGE_SIGNATURES.items():
        if image.startswith(signature):
            return content_type
    raise RequestError(415, "UnsupportedMediaType", "the image is neither a JPEG nor a PNG")


def _endpoint_error(error: ClientError) -> RequestError:
    """Map an InvokeEndpoint error to this function's answer: the caller sees a status and a
    generic message (or the model's own verdict on the image); the log gets AWS's message."""
    response = error.response
    code = response.get("Error", {}).get("Code", "")
    http_status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    detail = f"{code} ({http_status}): {response.get('Error', {}).get('Message', error)}"
    if code == "ModelError":
        original = int(response.get("OriginalStatusCode") or 500)
        detail += f"; the model answered {original}: {response.get('OriginalMessage', '')[:2000]}"
        if 400 <= original < 500:  # the model refused this image: the caller's to fix
            reason = _model_verdict(response.get("OriginalMessage") or "")
            return RequestError(original if original in MODEL_CLIENT_STATUSES else 400,
                                "ImageRejected", f"the model rejected the image: {reason}"
                                if reason else "the model rejected the image", detail)
        if original == 504:
            return RequestError(504, "EndpointTimeout", "the classifier did not answer in time",
                                detail)
        return RequestError(502, "ModelError", "the model failed to classify the image", detail)
    if code == "ThrottlingException" or http_status == 429:
        return RequestError(429, "Throttled", "the classifier is busy; retry shortly", detail)
    not_found = code == "ValidationError" and "not found" in str(response.get("Error"))
    if code in ("ModelNotReadyException", "ServiceUnavailable") or http_status == 503 \
            or not_found:  # no endpoint (yet): a deployment's state, not the request's fault
        return RequestError(503, "EndpointUnavailable",
                            "the classifier is unavailable; retry shortly", detail)
    return RequestError(502, "EndpointError", "the classifier failed", detail)


def _model_verdict(original: str) -> str | None:
    """The inference handler's own message, from the first line of the model's error body
    (`{"error": ..., "message": ...}`, then the toolkit's traceback); None for anything else."""
    try:
        verdict = json.loads(original.partition("\n")[0])
    except ValueError:
        return None
    if isinstance(verdict, dict) and isinstance(verdict.get("error"), str) \
            and isinstance(verdict.get("message"), str):
        return verdict["message"][:500]
    return None


def _detail(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _function_timeout(context: Any) -> float:
    """The function's timeout, as the time left when the invocation starts (Lambda has no
    variable for it); FUNCTION_TIMEOUT_SECONDS for callers without a Lambda context."""
    try:
        return context.get_remaining_time_in_millis() / 1000
    except AttributeError:
        return FUNCTION_TIMEOUT_SECONDS
