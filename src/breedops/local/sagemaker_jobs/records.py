"""Job state that changes outside any API request, recorded through the emulator's journal.

A job's progress (status transitions, times, metrics, a tuning job's trials) happens in the
executor, not in a request, so the emulator's request journal would not keep it. The executor
therefore records each change as a request to an internal route of the emulator itself:
journaled like any state change, and replayed at start, so finished jobs keep their outcome
across `make down && make up`. Only the executor calls these routes (in process, never over
HTTP: `dispatch` goes straight to the WSGI app).
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from werkzeug.test import EnvironBuilder

from breedops.local.journal import INTERNAL_MARK

ROUTE_PREFIX = "/_breedops/sagemaker/"
TRAINING_STATE = "training-job-state"
TUNING_STATE = "tuning-job-state"
TUNING_TRIAL = "tuning-trial"
ASSUME_ROLE = "assume-role"

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]
_app: WsgiApp | None = None
_app_lock = threading.Lock()


class DispatchError(RuntimeError):
    """An internal route answered with an error."""


def set_app(app: WsgiApp) -> None:
    """The emulator's outermost WSGI app (the journal), through which records go."""
    global _app
    with _app_lock:
        _app = app


def dispatch(route: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one record through the journal to its route; the route's JSON answer."""
    if _app is None:
        raise DispatchError("the job executor is not attached to an emulator")
    builder = EnvironBuilder(path=ROUTE_PREFIX + route, method="POST",
                             data=json.dumps(payload, default=_json_default),
                             content_type="application/json")
    status: list[str] = []
    environ = builder.get_environ()
    environ[INTERNAL_MARK] = True
    try:
        body = b"".join(_app(environ,
                             lambda line, headers, exc_info=None: status.append(line)))
    finally:
        builder.close()
    if not status or not status[0].startswith("2"):
        raise DispatchError(f"{route}: {status[0] if status else 'no answer'}: {body[:500]!r}")
    return json.loads(body or b"{}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- applying records to moto's objects ----------------------------------------------------------

_TIME_KEY = re.compile(r"(Time|Timestamp)$")


def to_datetime(value: Any) -> Any:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value


def with_datetimes(value: Any, key: str = "") -> Any:
    """Epoch seconds back into datetimes wherever AWS's shape has a timestamp."""
    if isinstance(value, dict):
        return {k: with_datetimes(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [with_datetimes(v, key) for v in value]
    return to_datetime(value) if _TIME_KEY.search(key) else value


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def apply_fields(target: Any, fields: dict[str, Any]) -> None:
    """Set AWS-named fields (`TrainingJobStatus`) as moto's attributes (`training_job_status`)."""
    for key, value in fields.items():
        setattr(target, snake_case(key), with_datetimes(value, key))


class RouteApp:
    """WSGI middleware that serves the internal routes and passes everything else on."""

    def __init__(self, app: WsgiApp, handlers: dict[str, Callable[[dict], dict]]) -> None:
        self.app = app
        self.handlers = handlers

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(ROUTE_PREFIX):
            return self.app(environ, start_response)
        handler = self.handlers.get(path[len(ROUTE_PREFIX):])
        if (handler is None or environ.get("REQUEST_METHOD") != "POST"
                or not environ.get(INTERNAL_MARK)):
            return _answer(start_response, "404 Not Found", {"message": "no such route"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream: io.BufferedIOBase = environ["wsgi.input"]
        try:
            payload = json.loads(stream.read(length) or b"{}")
            return _answer(start_response, "200 OK", handler(payload) or {})
        except Exception as e:  # noqa: BLE001 -- the answer carries the error to the caller
            return _answer(start_response, "400 Bad Request",
                           {"message": f"{type(e).__name__}: {e}"})


def _answer(start_response: Callable, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, default=_json_default).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
