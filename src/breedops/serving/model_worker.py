"""One model-server worker: loads a model directory with its own `code/inference.py` and serves
requests framed on stdin/stdout, as a serving container's worker would.

Run as a script with `python -P model_worker.py MODEL_DIR THREADS` (not `-m`): the worker must
import `breedops.modeling` from the tarball's `code/`, never from the repository, so that a
model is tested exactly as it would be deployed. It imports only the standard library until it
loads the handler.

Frames: a JSON header line, then `length` bytes of body, in both directions.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger("breedops.model_worker")

READY = {"ready": True}


class RequestProcessor:
    """The slice of TorchServe's request processor that handlers read: the request headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


class Context:
    """The slice of TorchServe's `Context` that the toolkit passes to handler functions."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.request_processor = [RequestProcessor(headers)]


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


def load_handler(model_dir: Path) -> Any:
    """Import `code/inference.py` with `code/` first on sys.path, as the container does."""
    code_dir = model_dir / "code"
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("inference", code_dir / "inference.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no code/inference.py in {model_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    return module


def call(function: Any, *args: Any, context: Context) -> Any:
    """The toolkit's convention: pass `context` only to functions that take one more argument."""
    if len(inspect.signature(function).parameters) > len(args):
        return function(*args, context)
    return function(*args)


def handle(handler: Any, model: Any, header: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request through input_fn -> predict_fn -> output_fn; errors become statuses."""
    context = Context(header.get("headers", {}))
    try:
        data = call(handler.input_fn, body, header.get("content_type"), context=context)
        prediction = call(handler.predict_fn, data, model, context=context)
        output = call(handler.output_fn, prediction, header.get("accept"), context=context)
    except Exception as e:  # noqa: BLE001 (a bad request must never kill the worker)
        status = int(getattr(e, "http_status", 500))
        if status >= 500:
            logger.error("inference failed: %s", traceback.format_exc())
        return status, json.dumps({"error": type(e).__name__, "message": str(e)}).encode()
    return 200, output.encode() if isinstance(output, str) else bytes(output)


def main(argv: list[str]) -> int:
    model_dir, threads = Path(argv[0]), int(argv[1])
    # Keep the protocol stream clean: anything the handler prints goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s worker[%(process)d] %(message)s")
    import torch

    torch.set_num_threads(threads)
    handler = load_handler(model_dir)
    model = handler.model_fn(str(model_dir))
    write_frame(protocol_out, READY)
    while (frame := read_frame(sys.stdin.buffer)) is not None:
        status, output = handle(handler, model, *frame)
        write_frame(protocol_out, {"status": status}, output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
