"""One Lambda execution environment: initialise the handler once, then serve invocations.

Run as a script with `python -P lambda_worker.py CODE_DIR HANDLER` (not `-m`), so that nothing
but the standard library and the function's own code is imported and memory is measured as the
Lambda runtime measures it. Frames are JSON lines on stdin/stdout.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any


class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers use."""

    def __init__(self, request_id: str, timeout_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.invoked_function_arn = ""
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def max_memory_mb() -> int:
    """Peak resident memory of this process image in MB.

    VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would report the runner's own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv: list[str]) -> int:
    code_dir, handler_path = argv[0], argv[1]
    protocol_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the function's prints and logs go to stderr, as to CloudWatch
    # The Python runtime gives the root logger a handler before it imports the function.
    logging.basicConfig(format="[%(levelname)s]\t%(asctime)s\t%(message)s", stream=sys.stderr)
    started = time.perf_counter()
    sys.path.insert(0, code_dir)
    module_name, _, function_name = handler_path.rpartition(".")
    handler = getattr(importlib.import_module(module_name), function_name)
    init_ms = (time.perf_counter() - started) * 1000
    protocol_out.write(json.dumps({"ready": True, "init_ms": init_ms}) + "\n")
    protocol_out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(request["request_id"], int(request["timeout_ms"]))
        begun = time.perf_counter()
        try:
            reply: dict[str, Any] = {"result": handler(request["event"], context)}
        except Exception as e:  # noqa: BLE001 (the invocation's error, not the worker's)
            reply = {"error": {"errorType": type(e).__name__, "errorMessage": str(e),
                               "stackTrace": traceback.format_exc().splitlines()}}
        reply["duration_ms"] = (time.perf_counter() - begun) * 1000
        reply["max_memory_mb"] = max_memory_mb()
        protocol_out.write(json.dumps(reply) + "\n")
        protocol_out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
