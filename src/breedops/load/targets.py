"""What the load generator sends to: the local endpoint or the local Lambda (boto3 both).

Load is only ever sent over the loopback interface: a URL that resolves elsewhere (a real AWS
endpoint, a colleague's machine) is refused before the first request.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from breedops.load.generator import LoadError, Outcome, Sender

THROTTLING_CODES = ("ThrottlingException", "TooManyRequestsException", "Throttling")


def require_loopback(url: str | None, what: str) -> None:
    """Refuse a URL whose host is not `localhost` or a loopback IP literal (no DNS involved)."""
    if not url:
        raise LoadError(f"{what} is not set: load runs only against local services "
                        "(run `make up` and source .local/env)")
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadError(f"{what} {url} is not a loopback address; load runs only against "
                        "local services (127.0.0.1, ::1 or localhost)")


def sample_image(size: int = 224) -> bytes:
    """A deterministic JPEG with structure (a gradient), when no image is given."""
    from PIL import Image

    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def json_request(image: bytes) -> bytes:
    """The JSON request of contract 8 (`{"image": "<base64>"}`)."""
    return json.dumps({"image": base64.b64encode(image).decode()}).encode()


def endpoint_sender(endpoint_name: str, image: bytes, max_connections: int = 64,
                    timeout_s: float = 30.0) -> Sender:
    """InvokeEndpoint through boto3, without retries so every error and throttle is counted."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

    client = boto3.client("sagemaker-runtime", config=Config(
        retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=max_connections,
        read_timeout=timeout_s, connect_timeout=5))
    require_loopback(client.meta.endpoint_url, "the SageMaker Runtime endpoint URL")
    body = json_request(image)

    def send() -> Outcome:
        try:
            response = client.invoke_endpoint(EndpointName=endpoint_name,
                                              ContentType="application/json", Body=body)
            response["Body"].read()
            return Outcome("200")
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "error"))
            return Outcome(status, throttled=code in THROTTLING_CODES or status == "429")
        except ReadTimeoutError:
            return Outcome("timeout")
        except BotoCoreError:
            return Outcome("connection")

    return send


@contextmanager
def lambda_sender(function_name: str, qualifier: str, image: bytes,
                  max_connections: int = 64) -> Iterator[Sender]:
    """Direct invocations of the function's alias through the emulator's Lambda API (boto3
    `Invoke`, no retries): the emulator runs the function with its reserved and provisioned
    concurrency, and a throttle comes back as the 429 it is."""
    from breedops.serving import lambda_client

    require_loopback(os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
                     or os.environ.get("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL (the emulator)")
    client = lambda_client.lambda_client(max_connections=max_connections, read_timeout=60)
    require_loopback(client.meta.endpoint_url, "the Lambda endpoint URL")
    payload = json_request(image)

    def send() -> Outcome:
        answer = lambda_client.invoke(client, function_name, payload, qualifier)
        if answer.throttled:
            return Outcome("429", throttled=True)
        if not answer.accepted:
            return Outcome(str(answer.status or answer.error_code))
        if answer.function_error:
            return Outcome("500")
        status = answer.payload.get("statusCode", 200) if isinstance(answer.payload, dict) \
            else 200
        return Outcome(str(status))

    yield send
