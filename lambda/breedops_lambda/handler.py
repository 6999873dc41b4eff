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
import os
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

ENDPOINT_NAME = os.environ.get("ENDPOINT_NAME", "")
TOP_K = int(os.environ.get("TOP_K", "3"))
CONNECT_TIMEOUT_SECONDS = float(os.environ.get("CONNECT_TIMEOUT_SECONDS", "2"))
READ_TIMEOUT_SECONDS = float(os.environ.get("READ_TIMEOUT_SECONDS", "10"))
# MAX_ATTEMPTS x (CONNECT + READ) must stay under the function's timeout (30 s in Terraform).
MAX_ATTEMPTS = int(os.environ.get("MAX_ATTEMPTS", "2"))
# Lambda's synchronous payload limit, measured on the request as it arrives (after base64).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
ALLOWED_FIELDS = {"image"}
# Content types an API Gateway client may send; images are sniffed, not trusted by header.
ACCEPTED_REQUEST_TYPES = ("application/json", "application/octet-stream", "image/jpeg",
                          "image/png", "application/x-image")

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
# botocore logs every credential and endpoint lookup at INFO: noise in one line per invocation.
logging.getLogger("botocore").setLevel(logging.WARNING)

# Created once per execution environment (the cold start), reused by every invocation.
RUNTIME = boto3.client(
    "sagemaker-runtime",
    config=Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    ),
)


class RequestError(Exception):
    """An invocation that ends with `status` and a message the caller can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The entry point: one request, one response, one log line."""
    started = time.perf_counter()
    request_id = getattr(context, "aws_request_id", "-")
    top_class = None
    try:
        image, content_type = parse_event(event)
        answer = classify(image, content_type)
        top_class = answer["predictions"][0]["breed"] if answer["predictions"] else None
        status, body = 200, {**answer, "request_id": request_id}
    except RequestError as e:
        status, body = e.status, {"error": e.code, "message": str(e), "request_id": request_id}
    logger.info(json.dumps({
        "message": "invocation", "request_id": request_id, "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "top_class": top_class, "endpoint": ENDPOINT_NAME,
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


def classify(image: bytes, content_type: str) -> dict[str, Any]:
    """Call the endpoint and turn its top-k into readable breed names."""
    if not ENDPOINT_NAME:
        raise RequestError(503, "EndpointUnavailable", "ENDPOINT_NAME is not configured")
    try:
        response = RUNTIME.invoke_endpoint(
            EndpointName=ENDPOINT_NAME, ContentType=content_type, Accept="application/json",
            Body=image, CustomAttributes=f"top_k={TOP_K}",
        )
    except (ReadTimeoutError, ConnectTimeoutError) as e:
        raise RequestError(504, "EndpointTimeout",
                           f"the endpoint did not answer in time ({e})") from e
    except EndpointConnectionError as e:
        raise RequestError(503, "EndpointUnavailable",
                           f"the endpoint cannot be reached ({e})") from e
    except ClientError as e:
        raise _endpoint_error(e) from e
    answer = json.loads(response["Body"].read())
    return {
        "model_version": answer.get("model_version"),
        "predictions": [
            {"breed": readable_name(p["label"]), "label": p["label"], "index": p["index"],
             "probability": p["probability"]}
            for p in answer["predictions"][:TOP_K]
        ],
    }


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
    """Map an InvokeEndpoint error to the status this function answers with."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", str(error))
    http_status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    if code == "ModelError":
        original = int(error.response.get("OriginalStatusCode") or 500)
        if original in (400, 413, 415):  # the model refused this image: the caller's to fix
            return RequestError(original, "ImageRejected",
                                f"the model rejected the image: {_original_message(error)}")
        return RequestError(502, "ModelError", f"the model failed: {_original_message(error)}")
    if code in ("ThrottlingException", "ModelNotReadyException") or http_status == 429:
        return RequestError(429, "Throttled", f"the endpoint is busy, retry later: {message}")
    if code == "ValidationError" and "not found" in message:
        return RequestError(503, "EndpointUnavailable", message)
    if code == "ValidationError":
        return RequestError(400, "BadRequest", message)
    return RequestError(503 if http_status == 503 else 502, code or "EndpointError", message)


def _original_message(error: ClientError) -> str:
    """The container's own message, unwrapped from its JSON when it has one."""
    original = error.response.get("OriginalMessage") or ""
    try:
        return str(json.loads(original).get("message", original))
    except (ValueError, AttributeError):
        return original
