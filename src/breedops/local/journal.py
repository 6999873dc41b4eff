"""Persistence for the emulator: a journal of the requests that changed state, replayed at start.

Every request that may change state is recorded (after it succeeded) with its headers and body;
bodies above `INLINE_BODY_LIMIT` go to files of their own so the journal stays small to parse.
Before each such request moto's random source is seeded from the request's journal position, so
a replay in a fresh process gives every resource the id it had (KMS key ids, EC2 ids, revision
ids), whatever reads or failed requests came between. Timestamps are the replay's, not the
original's.

The record is fsynced before the request is answered: what was acknowledged survives a kill -9
or a power loss. A line that cannot be replayed (torn by a crash mid-append, or damaged) is
skipped with a log line, set aside in `journal.rejected` and rewritten out of the journal; the
rest replays.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from moto.core.base_backend import AccountSpecificBackend
from moto.moto_api._internal import mock_random
from werkzeug.exceptions import ClientDisconnected
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

log = logging.getLogger(__name__)

INLINE_BODY_LIMIT = 64 * 1024
REJECTED_FILE = "journal.rejected"  # lines that could not be replayed, with why
REJECTED_BODIES = "bodies.rejected"  # body files that no entry names (a crash mid-append)
BODY_FILE_PATTERN = re.compile(r"^[0-9]{8,}\.bin$")
SEED_BASE = 1_000_003
HEALTH_PATH = "/_breedops/health"  # bucket names cannot start with "_": no clash with S3
MOTO_RESET_PATH = "/moto-api/reset"
# Actions that only read: not journaled. Anything else is (a spare entry costs little).
READ_ONLY_ACTION_PREFIXES = (
    "Describe", "List", "Get", "Head", "Search", "BatchGet", "Query", "Scan", "Simulate",
    "Lookup", "Decrypt", "Encrypt", "Verify", "Validate", "Estimate", "Preview",
)
UNREPLAYED_HEADERS = {"content-length", "transfer-encoding"}
# Set in the WSGI environ of in-process requests (internal records, replay): over HTTP the
# emulator's internal routes do not exist, or anyone could mint a role's credentials.
INTERNAL_MARK = "breedops.internal"

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]
# Requests served beside the journal: never recorded, and not under its lock for their whole
# length. Each entry is `(matches(environ), serve(environ, start_response, app, lock))`;
# `serve` must hold `lock` whenever it runs moto (moto's state, and its random source that a
# journaled request's seed drives, are not to be shared) and may release it for long work
# that changes no state a replay must restore. Lambda's `Invoke` is one (`lambda_invoke`):
# a function runs for up to 15 minutes, and invocations must run concurrently.
UNJOURNALED_ROUTES: list[tuple[Callable[[dict], bool], Callable[..., Iterable[bytes]]]] = []


def request_action(method: str, headers: dict[str, str], query: str, body: bytes) -> str | None:
    """The AWS action of a query- or JSON-protocol request; None for REST protocols."""
    target = headers.get("X-Amz-Target") or headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    actions = parse_qs(query).get("Action")
    if not actions and method == "POST" and "form-urlencoded" in headers.get("Content-Type", ""):
        actions = parse_qs(body.decode("utf-8", errors="replace")).get("Action")
    return actions[0] if actions else None


def may_change_state(method: str, path: str, headers: dict[str, str], query: str, body: bytes) -> bool:
    """Whether a request could change emulator state, judged from its method and action."""
    if method in ("GET", "HEAD", "OPTIONS") or path.startswith("/moto-api/"):
        return False
    action = request_action(method, headers, query, body)
    return not (action and action.startswith(READ_ONLY_ACTION_PREFIXES))


def make_multipart_upload_ids_deterministic() -> None:
    """Draw S3 multipart upload ids from moto's seeded random source.

    moto takes them from `os.urandom`, so a replayed `UploadPart` would name an upload id that
    the replayed `CreateMultipartUpload` never made (every model.tar.gz is a multipart upload).
    """
    from moto.s3.models import UPLOAD_ID_BYTES, FakeMultipart

    original = FakeMultipart.__init__
    if getattr(original, "__wrapped__", None) is not None:
        return

    def __init__(self: FakeMultipart, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        raw = base64.b64encode(mock_random.randbytes(UPLOAD_ID_BYTES)).decode()
        self.id = raw.replace("=", "").replace("+", "").replace("/", "")

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    FakeMultipart.__init__ = __init__  # type: ignore[method-assign]


def make_backend_creation_deterministic() -> None:
    """Seed moto's random source per (service, account, region) while a backend is created.

    moto creates a region's backend, with default resources such as EC2's default VPC and
    security group, on first use, which may be a read that the journal does not hold; seeding
    the creation itself gives those resources the same ids whenever it happens.
    """
    original = AccountSpecificBackend.__getitem__
    if getattr(original, "__wrapped__", None) is not None:
        return

    def __getitem__(self: AccountSpecificBackend, region_name: str) -> Any:
        if region_name in self.keys():
            return original(self, region_name)
        outer_state = mock_random.getstate()
        key = f"{self.service_name}/{self.account_id}/{region_name}".encode()
        mock_random.seed(zlib.crc32(key))
        try:
            return original(self, region_name)
        finally:
            mock_random.setstate(outer_state)

    __getitem__.__wrapped__ = original  # type: ignore[attr-defined]
    AccountSpecificBackend.__getitem__ = __getitem__  # type: ignore[method-assign]


class DamagedLineError(Exception):
    """A journal line that cannot be replayed; the message says why."""


@dataclass(frozen=True)
class SkippedLine:
    """A journal line that cannot be replayed, and why."""

    number: int
    reason: str
    raw: bytes


class Journal:
    """An append-only file of state-changing requests, with large bodies stored beside it.

    Each append is fsynced before the request is answered: an acknowledged change survives a
    kill -9 or a power loss. Reading it back (at start) skips what cannot be replayed, a line
    torn by a crash mid-append or one damaged otherwise, and `compact()` sets those aside in
    `journal.rejected` so that nothing is thrown away silently.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "journal.jsonl"
        self.bodies = directory / "bodies"
        self.rejected_path = directory / REJECTED_FILE
        self.rejected_bodies = directory / REJECTED_BODIES
        self.bodies.mkdir(parents=True, exist_ok=True)
        self.skipped: list[SkippedLine] = []
        self._kept: list[dict[str, Any]] = []
        self._rewrite = False  # the file differs from `_kept` (skipped lines, a missing newline)
        self._scan()
        used = [e["seq"] for e in self._kept] + [_body_seq(p.name) for p in self._body_files()]
        # Never reuse a seq: it is the entry's seed and names its body file.
        self.next_seq = max(used, default=-1) + 1

    def _scan(self) -> None:
        raw = self.path.read_bytes() if self.path.exists() else b""
        lines = raw.split(b"\n")
        unterminated = bool(lines[-1])  # no newline at the end: a crash came mid-write
        self._rewrite = unterminated
        seen: set[int] = set()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = self._parse(line, seen)
            except DamagedLineError as e:
                torn = unterminated and number == len(lines)
                reason = f"torn last line (the emulator stopped mid-append): {e}" if torn else str(e)
                self.skipped.append(SkippedLine(number, reason, line))
                self._rewrite = True
                continue
            seen.add(entry["seq"])
            self._kept.append(entry)

    def _parse(self, line: bytes, seen: set[int]) -> dict[str, Any]:
        """One journal entry, checked well enough to replay (else DamagedLineError, saying why)."""
        try:
            entry = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DamagedLineError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise DamagedLineError(f"not JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(entry, dict):
            raise DamagedLineError("not a journal entry (a JSON object)")
        for key, kind in (("seq", int), ("method", str), ("uri", str), ("headers", dict)):
            if not isinstance(entry.get(key), kind):
                raise DamagedLineError(
                    f"not a journal entry: {key!r} is missing or not a {kind.__name__}")
        if entry["seq"] < 0 or entry["seq"] in seen:
            raise DamagedLineError(f"seq {entry['seq']} is negative or repeated")
        if "body_file" in entry:
            name = entry["body_file"]
            if not isinstance(name, str) or not BODY_FILE_PATTERN.match(name):
                raise DamagedLineError(f"body_file {name!r} is not a body file name")
            try:
                size = (self.bodies / name).stat().st_size
            except OSError as e:
                raise DamagedLineError(
                    f"its body file {name} cannot be read ({e.strerror})") from None
            if entry.get("body_bytes", size) != size:
                raise DamagedLineError(
                    f"its body file {name} has {size} bytes, the entry says {entry['body_bytes']}")
        else:
            try:
                base64.b64decode(entry.get("body", ""), validate=True)
            except (ValueError, TypeError) as e:
                raise DamagedLineError(f"its body is not base64 ({e})") from None
        return entry

    def _body_files(self) -> list[Path]:
        return [p for p in self.bodies.iterdir() if BODY_FILE_PATTERN.match(p.name)]

    def seed_for(self, seq: int) -> int:
        return SEED_BASE + seq

    def append(self, method: str, raw_uri: str, headers: dict[str, str], body: bytes) -> None:
        """Record one request: its line written (and a large body durably); `sync()` makes
        the line durable, before the request is acknowledged."""
        seq = self.next_seq
        entry: dict[str, Any] = {
            "seq": seq,
            "method": method,
            "uri": raw_uri,
            "headers": {k: v for k, v in headers.items() if k.lower() not in UNREPLAYED_HEADERS},
        }
        if len(body) > INLINE_BODY_LIMIT:
            name = f"{seq:08d}.bin"
            _write_durably(self.bodies / name, body)
            entry["body_file"] = name
            entry["body_bytes"] = len(body)
        else:
            entry["body"] = base64.b64encode(body).decode("ascii")
        created = not self.path.exists()
        with self.path.open("ab") as f:
            end = f.tell()
            try:
                f.write(json.dumps(entry).encode() + b"\n")
                f.flush()
            except OSError:
                f.truncate(end)  # no half line for the next append to continue
                raise
        if created:
            _fsync_directory(self.directory)
        self.next_seq = seq + 1

    def sync(self) -> None:
        """Make every line written so far durable (one fsync covers them all)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> Iterable[tuple[dict[str, Any], bytes]]:
        for entry in self._kept:
            if "body_file" in entry:
                body = (self.bodies / entry["body_file"]).read_bytes()
            else:
                body = base64.b64decode(entry.get("body", ""))
            yield entry, body

    def compact(self) -> None:
        """Rewrite the journal without the lines that were skipped, atomically, and set those
        lines (and body files no entry names) aside in `journal.rejected` (`bodies.rejected/`).

        Only damage is dropped: every replayable entry is kept, since an entry's effect can only
        be judged by replaying what follows it (moto's state has no snapshot to compact into).
        """
        if self.skipped:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            records = b"".join(json.dumps({
                "rejected_at": when, "line": s.number, "reason": s.reason,
                "text": s.raw.decode("utf-8", errors="replace"),
                "base64": base64.b64encode(s.raw).decode("ascii"),
            }).encode() + b"\n" for s in self.skipped)
            with self.rejected_path.open("ab") as f:
                f.write(records)
                f.flush()
                os.fsync(f.fileno())
        if self._rewrite:
            _write_durably(self.path, b"".join(json.dumps(e).encode() + b"\n"
                                               for e in self._kept))
            _fsync_directory(self.directory)
        named = {e["body_file"] for e in self._kept if "body_file" in e}
        orphans = [p for p in self._body_files() if p.name not in named]
        if orphans:
            self.rejected_bodies.mkdir(exist_ok=True)
            for orphan in orphans:
                log.warning("journal body %s is named by no entry; moved to %s",
                            orphan.name, self.rejected_bodies)
                os.replace(orphan, self.rejected_bodies / orphan.name)
            _fsync_directory(self.bodies)
            _fsync_directory(self.rejected_bodies)
        self.skipped, self._kept, self._rewrite = [], [], False

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        for blob in self.bodies.iterdir():
            blob.unlink()
        _fsync_directory(self.directory)
        _fsync_directory(self.bodies)
        self._kept = []
        self.next_seq = 0


def _body_seq(name: str) -> int:
    return int(name.split(".", 1)[0])


def _write_durably(path: Path, data: bytes) -> None:
    """Write a whole file under a temporary name, fsync it and rename it into place: readers
    (and a restart after a crash) see the old content or the new, never part of it."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a created, renamed or removed file) survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalingApp:
    """WSGI middleware: serves the health check, journals state changes, replays the journal.

    Requests are handled one at a time: the journal's order is then the order in which state
    changed, and each request's ids come from its own seed.
    """

    def __init__(self, app: WsgiApp, journal: Journal | None) -> None:
        self.app = app
        self.journal = journal
        self._lock = threading.Lock()
        self.replayed = 0
        # Called after a reset: what the process itself sets up (the bootstrap admin) again.
        self.on_reset: Callable[[], None] = lambda: None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            body = json.dumps({"status": "ok", "replayed": self.replayed}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        for matches, serve in UNJOURNALED_ROUTES:
            if matches(environ):
                return serve(environ, start_response, self.app, self._lock)
        # Outside the lock: reading a large upload does not hold up every other request.
        body = _read_body(environ)
        with self._lock:
            chunks, appended = self._handle(environ, start_response, body)
        if appended:
            # Durable before the answer leaves, but outside the lock: other requests go on
            # during the fsync, and one fsync covers every line written before it.
            self.journal.sync()
        return chunks

    def _handle(self, environ: dict, start_response: Callable,
                body: bytes) -> tuple[list[bytes], bool]:
        """Serve one request under the lock; (the answer, whether it was journaled)."""
        # The app reads the body again from a fresh stream that ends with it: one copy, where a
        # stream limited by Content-Length is read 64 KB at a time.
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        request = Request(environ)
        method, path = request.method, request.path
        headers = dict(request.headers)
        query = environ.get("QUERY_STRING", "")
        journaled = self.journal is not None and may_change_state(
            method, path, headers, query, body
        )
        if journaled:
            mock_random.seed(self.journal.seed_for(self.journal.next_seq))
        status: list[int] = []

        def capture(status_line: str, response_headers: list, exc_info: Any = None) -> Any:
            status.append(int(status_line.split(" ", 1)[0]))
            return start_response(status_line, response_headers, exc_info)

        chunks = list(self.app(environ, capture))
        if path == MOTO_RESET_PATH and status and status[0] < 400:
            if self.journal is not None:
                self.journal.clear()
            self.on_reset()
        elif journaled and status and status[0] < 400:
            raw_uri = path + (f"?{query}" if query else "")
            self.journal.append(method, raw_uri, headers, body)
            return chunks, True
        return chunks, False

    def replay(self) -> int:
        """Re-apply the journal to fresh backends, with the seeds of the original requests."""
        if self.journal is None:
            return 0
        started = time.monotonic()
        for skipped in self.journal.skipped:
            log.warning("journal line %d skipped: %s", skipped.number, skipped.reason)
        count = failures = 0
        with _trusted():
            count, failures = self._replay_entries()
        self.replayed = count
        log.info(
            "replayed %d journaled requests (%d failed, %d lines skipped) in %.2f s",
            count, failures, len(self.journal.skipped), time.monotonic() - started,
        )
        if self.journal.skipped:
            log.warning("the skipped lines are kept in %s", self.journal.rejected_path)
        self.journal.compact()
        return count

    def _replay_entries(self) -> tuple[int, int]:
        assert self.journal is not None
        count = failures = 0
        for entry, body in self.journal.entries():
            mock_random.seed(self.journal.seed_for(entry["seq"]))
            path, _, query = entry["uri"].partition("?")
            builder = None
            try:
                builder = EnvironBuilder(
                    path=path, query_string=query, method=entry["method"],
                    headers=entry["headers"], data=body,
                )
                environ = builder.get_environ()
                environ[INTERNAL_MARK] = True  # a journaled internal record replays as one
                status = _status_of(self.app, environ)
            except Exception as e:  # noqa: BLE001 -- one bad entry must not stop the start
                status = f"error {type(e).__name__}: {e}"
            finally:
                if builder is not None:
                    builder.close()
            count += 1
            if not status.startswith(("2", "3")):
                failures += 1
                log.warning("replay of %s %s answered %s", entry["method"], path, status)
        return count, failures


def _read_body(environ: dict) -> bytes:
    """The request's body, in one read where the client sent its length (werkzeug's reader
    takes 64 KB at a time: ~3 CPU-s per GB of checkpoints); a short body is a disconnect."""
    length = environ.get("CONTENT_LENGTH") or ""
    if not length.isdigit() or "wsgi.input_terminated" in environ:  # chunked, or no length
        return Request(environ).get_data()
    body = environ["wsgi.input"].read(int(length))
    if len(body) != int(length):
        raise ClientDisconnected()
    return body


@contextmanager
def _trusted() -> Iterator[None]:
    """Replay without IAM checks: every entry was authorised when it was first made, and a
    role's session may have expired since."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    limit, count = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = limit
        ActionAuthenticatorMixin.request_count = count


def _status_of(app: WsgiApp, environ: dict) -> str:
    """Run one request through a WSGI app and return its status line."""
    status: list[str] = []
    list(app(environ, lambda line, headers, exc_info=None: status.append(line)))
    return status[0] if status else "no response"
