"""The worker pool of one model: `model_worker.py` processes, respawned when they die or miss
the invocation timeout."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breedops.local.hosting.errors import HostingError
from breedops.local.hosting.watchdog import WATCHDOG

logger = logging.getLogger(__name__)

# SageMaker gives a real-time endpoint's container 60 s to answer an invocation (queueing
# included); then the runtime answers ModelError with TIMEOUT_MESSAGE and the worker is replaced.
INVOCATION_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_INVOCATION_TIMEOUT", "60"))
TIMEOUT_MESSAGE = ("Your invocation timed out while waiting for a response from container "
                   "primary. Review the latency metrics for each container in Amazon "
                   "CloudWatch, resolve the issue, and try again.")
# A worker must load its model within this long (SageMaker's container startup health check
# allows up to 3600 s; a local model is small).
WORKER_START_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_START_TIMEOUT", "600"))
# A worker that cannot be restarted is retried after this long, doubling up to 30 s.
RESPAWN_DELAY_SECONDS = 0.5
WORKER_SCRIPT = Path(__file__).with_name("model_worker.py")


@dataclass(frozen=True)
class WorkerReply:
    status: int
    body: bytes
    timed_out: bool = False


def _timed_out() -> WorkerReply:
    return WorkerReply(504, TIMEOUT_MESSAGE.encode(), timed_out=True)


class ModelWorker:
    """One `model_worker.py` process; it answers one request at a time.

    A worker that misses a deadline (loading, or answering) is killed: a hung model cannot be
    interrupted any other way, and its pool starts a fresh one in its place.
    """

    def __init__(self, model_dir: Path, threads: int,
                 start_timeout_seconds: float = WORKER_START_TIMEOUT_SECONDS) -> None:
        self.killed = False
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT), str(model_dir), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        deadline = WATCHDOG.arm(start_timeout_seconds, self.kill)
        try:
            ready = self._read_frame()
        finally:
            in_time = WATCHDOG.disarm(deadline)
        if ready is None or not ready[0].get("ready"):
            self.kill()
            self.wait()
            why = "failed to load" if in_time else (
                f"did not load within {start_timeout_seconds:g} s")
            raise HostingError(f"the model in {model_dir} {why} (see the worker log)")

    def invoke(self, header: dict[str, Any], body: bytes, timeout_seconds: float) -> WorkerReply:
        """The worker's answer, or a timed-out reply (the worker killed) after the timeout."""
        assert self.process.stdin is not None
        deadline = WATCHDOG.arm(timeout_seconds, self.kill)
        try:
            self.process.stdin.write(
                json.dumps({**header, "length": len(body)}).encode() + b"\n" + body
            )
            self.process.stdin.flush()
            frame = self._read_frame()
        except (OSError, ValueError):  # a broken pipe; a torn frame from a dying worker
            frame = None
        finally:
            in_time = WATCHDOG.disarm(deadline)
        if not in_time:
            return _timed_out()
        if frame is None:
            return WorkerReply(500, b'{"error": "WorkerDied", "message": "the worker exited"}')
        return WorkerReply(int(frame[0]["status"]), frame[1])

    def healthy(self) -> bool:
        return not self.killed and self.process.poll() is None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.killed = True
        try:
            self.process.kill()
        except OSError:  # already reaped
            pass

    def stop(self) -> None:
        """Ask the worker to exit (end of its input); `wait` reaps it."""
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:  # it died with input unread
                pass

    def wait(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop()
        self.wait()

    def _read_frame(self) -> tuple[dict[str, Any], bytes] | None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            return None
        header = json.loads(line)
        body = self.process.stdout.read(int(header.get("length", 0)))
        if len(body) < int(header.get("length", 0)):
            return None  # it died mid-answer
        return header, body


class PoolRetiredError(Exception):
    """The pool was replaced after the request picked it; the request asks again."""


class WorkerPool:
    """`size` workers for one model directory; a request waits for an idle one.

    Every slot stays filled: a worker that dies or misses the invocation timeout is replaced in
    the background, retried until a new one starts. Retiring is graceful: requests already
    waiting are still served, later ones are refused with `PoolRetiredError` so that they go to
    the pool that replaced this one; each worker stops once no request needs it, and `join`
    reaps them all.
    """

    def __init__(self, model_dir: Path, size: int,
                 invocation_timeout_seconds: float = INVOCATION_TIMEOUT_SECONDS) -> None:
        self.model_dir, self.size = model_dir, size
        self.invocation_timeout_seconds = invocation_timeout_seconds
        self._threads = max(1, (os.cpu_count() or 1) // size)
        self._cond = threading.Condition()
        self._idle: list[ModelWorker] = []
        self._stopping: list[ModelWorker] = []  # stopped or dead, for `join` to reap
        self._retired = threading.Event()
        self._waiting = 0
        self._slots = 0  # workers running or being replaced, not yet reaped
        try:
            for _ in range(size):
                self._idle.append(ModelWorker(model_dir, self._threads))
                self._slots += 1
        except BaseException:
            for worker in self._idle:
                worker.close()
            raise
        logger.info("serving %s with %d worker(s)", model_dir, size)

    def invoke(self, header: dict[str, Any], body: bytes) -> WorkerReply:
        """The answer of the next idle worker; waiting for one counts against the timeout, as
        a request queued in the container does."""
        deadline = time.monotonic() + self.invocation_timeout_seconds
        with self._cond:
            if self._retired.is_set():
                raise PoolRetiredError(str(self.model_dir))
            self._waiting += 1
            try:
                while True:
                    while not self._idle:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return _timed_out()
                        self._cond.wait(remaining)
                    worker = self._idle.pop()
                    if worker.healthy():
                        break
                    self._respawn(worker)  # it died idle: this request waits for another
            finally:
                self._waiting -= 1
                self._drain_locked()
        try:
            return worker.invoke(header, body, max(0.0, deadline - time.monotonic()))
        finally:
            self._give_back(worker)

    def retire(self) -> None:
        """Refuse new requests; stop the idle workers now and the busy ones when done."""
        with self._cond:
            self._retired.set()
            self._drain_locked()

    def join(self, timeout_seconds: float | None = None) -> bool:
        """Reap the workers of a retired pool as they stop; True once every one has exited."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        while True:
            with self._cond:
                while not self._stopping and self._slots > 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                if not self._stopping:
                    return True
                stopping, self._stopping = self._stopping, []
            for worker in stopping:
                worker.wait()
            with self._cond:
                self._slots -= len(stopping)
                self._cond.notify_all()

    def _needed_locked(self) -> bool:
        return not self._retired.is_set() or self._waiting > 0

    def _drain_locked(self) -> None:
        if not self._needed_locked():
            for worker in self._idle:
                worker.stop()  # all stop at once: a worker's exit takes a while under load
            self._stopping.extend(self._idle)
            self._idle.clear()
            self._cond.notify_all()

    def _give_back(self, worker: ModelWorker) -> None:
        with self._cond:
            if worker.healthy() and self._needed_locked():
                self._idle.append(worker)
                self._cond.notify()
                return
            if worker.healthy() or not self._needed_locked():
                worker.stop()
                self._stopping.append(worker)
                self._cond.notify_all()
                return
        self._respawn(worker)

    def _respawn(self, worker: ModelWorker) -> None:
        """Replace a dead or killed worker: a slot is never given up while the pool is needed."""
        logger.warning("a worker of %s %s; starting a new one", self.model_dir,
                       "timed out" if worker.killed else "died")
        threading.Thread(target=self._replace, args=(worker,), daemon=True).start()

    def _replace(self, dead: ModelWorker) -> None:
        dead.kill()
        dead.wait()
        delay = RESPAWN_DELAY_SECONDS
        while True:
            with self._cond:
                if not self._needed_locked():
                    self._slots -= 1
                    self._cond.notify_all()
                    return
            try:
                worker = ModelWorker(self.model_dir, self._threads)
            except (HostingError, OSError) as e:
                logger.error("could not restart a worker of %s (retrying in %g s): %s",
                             self.model_dir, delay, e)
                with self._cond:  # a retirement wakes it early, to give the slot up
                    self._cond.wait_for(lambda: not self._needed_locked(), delay)
                delay = min(delay * 2, 30.0)
                continue
            with self._cond:
                if self._needed_locked():
                    self._idle.append(worker)
                    self._cond.notify()
                else:
                    worker.stop()
                    self._stopping.append(worker)
                    self._cond.notify_all()
            return
