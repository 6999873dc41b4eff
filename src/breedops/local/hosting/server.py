"""The HTTP layer of local hosting: requests parsed and limited, authorized by the emulator, and
answered from the endpoint's worker pool (or the one model of `--model-dir`).

It is the standard library's `ThreadingHTTPServer`: the server only relays bytes to worker
processes, so a framework would add a dependency and latency without removing code.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import socket
import sys
import threading
import urllib.error
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError, EmulatorError
from breedops.local.front_door import refusal
from breedops.local.hosting.errors import HostingError, RuntimeApiError
from breedops.local.hosting.registry import (
    AUTHORIZE_TIMEOUT_SECONDS,
    EndpointRegistry,
    EndpointTarget,
)
from breedops.local.hosting.watchdog import WATCHDOG
from breedops.local.hosting.workers import (
    INVOCATION_TIMEOUT_SECONDS,
    PoolRetiredError,
    WorkerPool,
    WorkerReply,
)
from breedops.settings import DEFAULT_REGION, state_dir

logger = logging.getLogger(__name__)

DEFAULT_PORT = int(os.environ.get("BREEDOPS_HOSTING_PORT", "5567"))
# How often the served process looks for new InService endpoints to load ahead of requests.
PRELOAD_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_PRELOAD_SECONDS", "5"))
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's request limit
# A request's line, headers and body must all arrive within this long (and each socket read or
# write within it): a slow or stalled client must not hold a server thread.
REQUEST_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_REQUEST_TIMEOUT", "20"))
CONTENT_LENGTH = re.compile(r"\d{1,19}")
INVOCATIONS_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
FORWARDED_HEADERS = ("X-Amzn-SageMaker-Custom-Attributes",)
INVOKE_ACTION = "sagemaker:InvokeEndpoint"


class RuntimeHandler(BaseHTTPRequestHandler):
    """HTTP front: the Runtime API (`registry` set) or the container contract (`pool` set)."""

    server: HostingServer
    protocol_version = "HTTP/1.1"

    def parse_request(self) -> bool:
        # The emulator's front-door check: a web page must never reach the models' code.
        if not super().parse_request():
            return False
        refused = refusal(self.headers.get, self.server.server_address[1],
                          self.server.server_address[0])
        if refused is not None:
            self.close_connection = True
            self._send_error(RuntimeApiError(refused.status, refused.code, refused.message))
        return refused is None

    def setup(self) -> None:
        self.timeout = self.server.request_timeout_seconds  # each socket read and write
        super().setup()
        # An answer goes out as two writes (headers, body): with Nagle's algorithm the body
        # waits for the client's delayed ACK of the headers, 40 ms on Linux, on every request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        # The whole request must arrive in time, not only each read: a client that trickles
        # bytes would otherwise hold this thread. Past the deadline the socket is shut down.
        self._expect_continue = False
        self._read_deadline = WATCHDOG.arm(self.server.request_timeout_seconds, self._cut_off)
        try:
            super().handle_one_request()
        finally:
            WATCHDOG.disarm(self._read_deadline)

    def handle_expect_100(self) -> bool:
        # "100 Continue" is sent only once the declared length is accepted (`_read_body`), so
        # a refused upload is never sent.
        self._expect_continue = True
        return True

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200, b"", "text/plain")
        else:
            self._send_error(RuntimeApiError(404, "UnknownOperationException", "Unknown path"))

    def do_POST(self) -> None:
        match = INVOCATIONS_PATH.match(self.path.split("?")[0])
        try:
            body = self._read_body()
            if body is None:
                return
            if match and self.server.registry is not None:
                self._invoke_endpoint(match["name"], body)
            elif self.path == "/invocations" and self.server.pool is not None:
                reply = self.server.pool.invoke(self._worker_header(), body)
                self._send(reply.status, reply.body,
                           "text/plain" if reply.timed_out else "application/json")
            else:
                raise RuntimeApiError(404, "UnknownOperationException", "Unknown path")
        except RuntimeApiError as e:
            self._send_error(e)
        except Exception as e:  # the server stays up whatever a request does
            logger.exception("request failed")
            self._send_error(RuntimeApiError(500, "InternalFailure", f"internal failure: {e}"))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _content_length(self) -> int:
        """The declared body size, checked before a byte of the body is read. A refused
        request's connection closes: its body was never consumed."""
        values = self.headers.get_all("Content-Length") or []
        error = None
        if "Transfer-Encoding" in self.headers:
            error = RuntimeApiError(411, "ValidationError",
                                    "Transfer-Encoding is not supported: send the body with a "
                                    "Content-Length header.")
        elif not values:
            error = RuntimeApiError(411, "ValidationError",
                                    "A Content-Length header is required.")
        elif (len({v.strip() for v in values}) > 1
              or not CONTENT_LENGTH.fullmatch(values[0].strip())):
            error = RuntimeApiError(400, "ValidationError",
                                    f"Content-Length {', '.join(values)!r} is not a byte count.")
        elif int(values[0]) > MAX_PAYLOAD_BYTES:
            error = RuntimeApiError(413, "ValidationError",
                                    f"HTTP content length exceeded: the request is "
                                    f"{int(values[0])} bytes; the limit is "
                                    f"{MAX_PAYLOAD_BYTES} bytes.")
        if error:
            self.close_connection = True
            raise error
        return int(values[0])

    def _read_body(self) -> bytes | None:
        """The body; None when it did not arrive within the request timeout (the connection is
        dropped, as there is nobody left to answer)."""
        length = self._content_length()
        if self._expect_continue:
            self.send_response_only(100)
            self.end_headers()
        try:
            body = self.rfile.read(length)
        except OSError:  # a read timed out, or the deadline shut the socket
            body = b""
        if not WATCHDOG.disarm(self._read_deadline) or len(body) < length:
            self.close_connection = True
            logger.info("dropped a request from %s: its body did not arrive within %g s",
                        self.address_string(), self.server.request_timeout_seconds)
            return None
        return body

    def _cut_off(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass

    def _invoke_endpoint(self, endpoint_name: str, body: bytes) -> None:
        registry = self.server.registry
        assert registry is not None
        authorize(registry, self.command, self.path, dict(self.headers.items()), body,
                  endpoint_name)
        for _ in range(3):  # a pool retired under us (an update) hands over to its successor
            try:
                target, pool = registry.pool_for(endpoint_name)
                reply = pool.invoke(self._worker_header(), body)
                break
            except HostingError as e:
                raise RuntimeApiError(503, "ServiceUnavailable", str(e)) from e
            except PoolRetiredError:
                continue
        else:
            raise RuntimeApiError(503, "ServiceUnavailable",
                                  f"endpoint {endpoint_name} is being updated; retry")
        if reply.status != 200:
            raise _model_error(target, registry.account_id(), reply)
        self._send(200, reply.body, "application/json", {
            "x-Amzn-Invoked-Production-Variant": target.variant_name,
        })

    def _worker_header(self) -> dict[str, Any]:
        return {
            "content_type": self.headers.get("Content-Type"),
            "accept": self.headers.get("Accept"),
            "headers": {h: self.headers[h] for h in FORWARDED_HEADERS if h in self.headers},
        }

    def _send_error(self, error: RuntimeApiError) -> None:
        headers = {"x-amzn-ErrorType": error.error_type}
        if self.close_connection:
            headers["Connection"] = "close"
        self._send(error.status, error.body(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def authorize(registry: EndpointRegistry, method: str, raw_path: str, headers: dict[str, str],
              body: bytes, endpoint_name: str) -> str | None:
    """The caller's principal, once the emulator allowed it `InvokeEndpoint` on the
    endpoint; else the RuntimeApiError AWS answers (503 when nobody could decide)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from breedops.local.service_roles import ServiceRoleError, call_service

    path, _, query = raw_path.partition("?")
    try:
        payload = {"method": method, "path": path, "query": query, "headers": headers,
                   "body_sha256": hashlib.sha256(body).hexdigest(),
                   "action": INVOKE_ACTION, "resource": registry.endpoint_arn(endpoint_name)}
        answer = call_service("authorize", payload, timeout=AUTHORIZE_TIMEOUT_SECONDS)
    except (ServiceRoleError, EmulatorError, BotoCoreError, ClientError,
            urllib.error.URLError, OSError, ValueError) as e:
        logger.error("cannot authorize a request to endpoint %s: %s", endpoint_name, e)
        raise RuntimeApiError(
            503, "ServiceUnavailable",
            f"The request cannot be authorized right now (the emulator at "
            f"{os.environ.get('AWS_ENDPOINT_URL', '?')} did not decide: {e}); retry.",
        ) from e
    if not answer.get("allowed"):
        error = answer.get("error") or {}
        raise RuntimeApiError(int(error.get("status", 403)),
                              str(error.get("code", "AccessDeniedException")),
                              str(error.get("message", "Access denied")))
    return answer.get("principal")


def _model_error(target: EndpointTarget, account_id: str, reply: WorkerReply) -> RuntimeApiError:
    """A container error wrapped as SageMaker does: 424 ModelError with the original answer."""
    # A container that never answered has no status: SageMaker reports 0.
    status = 0 if reply.timed_out else reply.status
    kind = "client" if 400 <= status < 500 else "server"
    original = reply.body.decode(errors="replace")
    log_group = f"/aws/sagemaker/Endpoints/{target.endpoint_name}"
    return RuntimeApiError(
        424, "ModelError",
        f"Received {kind} error ({status}) from primary with message \"{original}\". "
        f"See the log group {log_group} in account {account_id} for more information.",
        OriginalStatusCode=status,
        OriginalMessage=original,
        LogStreamArn=(f"arn:aws:logs:{DEFAULT_REGION}:{account_id}:log-group:{log_group}"),
    )


class HostingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, registry: EndpointRegistry | None = None,
                 pool: WorkerPool | None = None,
                 request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> None:
        super().__init__(address, RuntimeHandler)
        self.registry, self.pool = registry, pool
        self.request_timeout_seconds = request_timeout_seconds

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or is cut off (a timeout, a retry) is routine, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            logger.debug("client %s disconnected", client_address)
        else:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        if self.registry:
            self.registry.close()
        if self.pool:
            self.pool.retire()
            self.pool.join()


def build_server(host: str, port: int, model_dir: Path | None = None, workers: int = 1,
                 preload_seconds: float | None = None,
                 invocation_timeout_seconds: float = INVOCATION_TIMEOUT_SECONDS,
                 request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> HostingServer:
    """The Runtime API server (preloading endpoints every `preload_seconds` when given), or the
    container contract for `model_dir`."""
    if model_dir is not None:
        if not (model_dir / "code" / "inference.py").is_file():
            raise HostingError(f"{model_dir} has no code/inference.py: not an extracted model")
        return HostingServer((host, port),
                             pool=WorkerPool(model_dir, workers, invocation_timeout_seconds),
                             request_timeout_seconds=request_timeout_seconds)
    registry = EndpointRegistry(state_dir() / "hosting",
                                invocation_timeout_seconds=invocation_timeout_seconds)
    if preload_seconds:
        threading.Thread(target=registry.preload_forever, args=(preload_seconds,),
                         daemon=True).start()
    return HostingServer((host, port), registry=registry,
                         request_timeout_seconds=request_timeout_seconds)


def serve(host: str, port: int, model_dir: Path | None = None, workers: int = 1,
          preload_seconds: float | None = PRELOAD_SECONDS) -> None:
    """Serve in the foreground until interrupted."""
    server = build_server(host, port, model_dir, workers, preload_seconds)
    logger.info("local hosting on http://%s:%d", host, server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Local SageMaker hosting: the SageMaker Runtime `InvokeEndpoint` protocol "
                    "over local workers.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: 5567)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="serve one extracted model directory (container contract)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes with --model-dir (default: 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(args.host, args.port, args.model_dir, args.workers)
    except BreedopsError as e:
        print(f"breedops hosting: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
