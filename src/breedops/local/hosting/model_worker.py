"""One model-server worker: loads a model directory with its own `code/inference.py` and serves
requests framed on stdin/stdout, as a serving container's worker would.

Requests go through the PyTorch serving container's own handler service (TorchServe calls it;
it calls the SageMaker inference toolkit's `Transformer.transform`):
the same handler calling convention, the same decoding of the body, and the same errors: a
toolkit error answers its `status_code`, anything else 500, with the message and the traceback.

Run as a script with `python -P model_worker.py MODEL_DIR THREADS` (not `-m`): the worker must
import `breedops.modeling` from the tarball's `code/`, never from the repository, so that a
model is tested exactly as it would be deployed. It imports only the standard library until it
loads the handler.

Frames: a JSON header line, then `length` bytes of body, in both directions.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

READY = {"ready": True}


class RequestProcessor:
    """The slice of TorchServe's request processor that handlers read: the request headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


class Context:
    """The slice of TorchServe's `Context` that the toolkit uses. TorchServe keeps one per worker
    and swaps in each batch's request processor; the toolkit hands that same object to handler
    functions and sets the response status on it."""

    def __init__(self, model_dir: Path) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.model_name = "model"  # the name SageMaker's containers register the model under
        self.request_processor = [RequestProcessor({})]
        self.status: int | None = None
        self.phrase = ""
        self.content_type: str | None = None

    def start_request(self, headers: dict[str, str]) -> None:
        self.request_processor = [RequestProcessor(headers)]
        self.status, self.phrase, self.content_type = None, "", None

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status, self.phrase = code, phrase

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_type = value


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """Read one frame; None at end of stream."""
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    body = stream.read(int(header.get("length", 0)))
    return header, body


def write_frame(stream: BinaryIO, header: dict[str, Any], body: bytes = b"") -> None:
    stream.write(json.dumps({**header, "length": len(body)}).encode() + b"\n" + body)
    stream.flush()


def load_service(model_dir: Path, context: Context) -> Any:
    """The PyTorch container's handler service with the model loaded. Its Transformer imports
    `inference` from `code/` (first on the path, where the container's PYTHONPATH puts it) and
    calls its `model_fn`."""
    sys.path.insert(0, str(model_dir / "code"))
    from sagemaker_pytorch_serving_container.handler_service import HandlerService

    service = HandlerService()
    service.initialize(context)
    return service


def request_headers(header: dict[str, Any]) -> dict[str, str]:
    """The request's headers as TorchServe presents them to the toolkit."""
    headers = {"Content-Type": header.get("content_type"), "Accept": header.get("accept"),
               **header.get("headers", {})}
    return {name: value for name, value in headers.items() if value is not None}


def handle(service: Any, context: Context, header: dict[str, Any],
           body: bytes) -> tuple[dict[str, Any], bytes]:
    """One request through the service (`Transformer.transform`), which never raises: the status
    is on the context (200 when unset, as TorchServe answers)."""
    context.start_request(request_headers(header))
    output = service.handle([{"body": body}], context)[0]
    status = context.status or 200  # the toolkit has logged any error with its traceback
    reply = {"status": status, "phrase": context.phrase, "content_type": context.content_type}
    return reply, output.encode() if isinstance(output, str) else bytes(output)


def main(argv: list[str]) -> int:
    model_dir, threads = Path(argv[0]), int(argv[1])
    # Keep the protocol stream clean: anything the handler prints goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s worker[%(process)d] %(message)s")
    import torch

    torch.set_num_threads(threads)
    context = Context(model_dir)
    service = load_service(model_dir, context)
    write_frame(protocol_out, READY)
    while (frame := read_frame(sys.stdin.buffer)) is not None:
        reply, output = handle(service, context, *frame)
        write_frame(protocol_out, reply, output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
