"""Background services with a pidfile, a log and a health check, started and stopped generically.

A `Service` says what to run and how to tell it is ready; `start_service`, `stop_service` and
`service_status` keep `<name>.pid` and `<name>.log` under a state directory. The pidfile records
the process's start time, so a pid that the system reused for another program reads as stale.
Starting and stopping hold `<name>.lock` (`state_lock`), so two commands at once never start a
service twice nor stop one that is half started.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from breedops.errors import EmulatorError

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
HEALTH_TIMEOUT_SECONDS = 2.0
POLL_INTERVAL_SECONDS = 0.1
LOCK_TIMEOUT_SECONDS = 300.0  # longer than any start (a replay of a long journal) takes


@dataclass(frozen=True)
class Service:
    """What to run in the background, on which port, and the path that answers 200 when ready."""

    name: str
    argv: Sequence[str]
    port: int
    health_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_seconds: float = 120.0
    stop_timeout_seconds: float = 10.0

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"


@dataclass(frozen=True)
class ServiceState:
    """What `status` reports about one service."""

    name: str
    running: bool
    pid: int | None
    url: str
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return f"{self.name}: {state}, url {self.url}, log {self.log_path}"


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def pidfile_path(service: Service, state: Path) -> Path:
    return state / f"{service.name}.pid"


def log_path(service: Service, state: Path) -> Path:
    return state / f"{service.name}.log"


def write_atomically(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def state_lock(state: Path, name: str,
               timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the exclusive lock `<state>/<name>.lock`, waiting for another holder to finish.

    An fcntl lock: the kernel releases it when its holder exits, even by SIGKILL, so there is
    no stale lock to clean up. Started services never inherit it (the fd is close-on-exec).
    """
    state.mkdir(parents=True, exist_ok=True)
    path = state / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout_seconds
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmulatorError(
                        f"another breedops command has held {path} for {timeout_seconds:.0f} s; "
                        "wait for it to finish, or stop it") from None
                if not waiting:
                    log.info("waiting for another breedops command to release %s", path)
                    waiting = True
                time.sleep(POLL_INTERVAL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_pidfile(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        log.warning("ignoring unreadable pidfile %s", path)
        return None


def _live_process(record: dict | None) -> psutil.Process | None:
    """The process the pidfile names, unless it is gone, a zombie or another program now."""
    if not record:
        return None
    try:
        process = psutil.Process(int(record["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(process.pid)
            return None
        # A reused pid belongs to a process that started at another time.
        if abs(process.create_time() - float(record["create_time"])) > 0.01:
            return None
        return process
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError, TypeError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of a child we started, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((LOCALHOST, port)) == 0


def service_status(service: Service, state: Path) -> ServiceState:
    """Running or stopped, from the pidfile and the process table."""
    record = _read_pidfile(pidfile_path(service, state))
    process = _live_process(record)
    url = f"http://{LOCALHOST}:{record['port']}" if process and record else service.url
    return ServiceState(
        name=service.name,
        running=process is not None,
        pid=process.pid if process else None,
        url=url,
        log_path=log_path(service, state),
    )


def start_service(service: Service, state: Path) -> ServiceState:
    """Start the service in the background and return once it answers its health check.

    A no-op when it already runs (once it answers); a stale pidfile (process gone, or pid
    reused) is replaced. Holds the service's lock: a concurrent start waits, then finds it.
    """
    with state_lock(state, service.name):
        return _start_locked(service, state)


def _start_locked(service: Service, state: Path) -> ServiceState:
    current = service_status(service, state)
    if current.running:
        log.info("%s already running (pid %s) at %s", service.name, current.pid, current.url)
        # Its starter may have died before it answered: wait for it as the starter would have.
        record = _read_pidfile(pidfile_path(service, state))
        _wait_until_healthy(service, current.url, lambda: None if _live_process(record) else -1,
                            log_path(service, state))
        return current
    pidfile = pidfile_path(service, state)
    if pidfile.exists():
        log.info("%s: removing stale pidfile %s", service.name, pidfile)
        pidfile.unlink()
    if _port_in_use(service.port):
        raise EmulatorError(
            f"{service.name}: port {service.port} on {LOCALHOST} is taken by another program; "
            "stop it or choose another port"
        )
    logfile = log_path(service, state)
    with logfile.open("ab") as log_stream:
        process = subprocess.Popen(
            list(service.argv),
            stdin=subprocess.DEVNULL,
            stdout=log_stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            start_new_session=True,  # survives the CLI and gets its own process group
        )
    record = {
        "pid": process.pid,
        "port": service.port,
        "create_time": psutil.Process(process.pid).create_time(),
        "argv": list(service.argv),
    }
    write_atomically(pidfile, json.dumps(record))
    try:
        _wait_until_healthy(service, service.url, process.poll, logfile)
    except EmulatorError:
        _terminate(process.pid, service.stop_timeout_seconds)
        pidfile.unlink(missing_ok=True)
        raise
    log.info("%s started (pid %d) at %s", service.name, process.pid, service.url)
    return service_status(service, state)


def _wait_until_healthy(service: Service, url: str, exit_code: Callable[[], int | None],
                        logfile: Path) -> None:
    deadline = time.monotonic() + service.startup_timeout_seconds
    while time.monotonic() < deadline:
        code = exit_code()
        if code is not None:
            raise EmulatorError(
                f"{service.name} exited with code {code} while starting; "
                f"see {logfile}:\n{_tail(logfile)}"
            )
        if _healthy(url + service.health_path):
            return
        time.sleep(POLL_INTERVAL_SECONDS)
    raise EmulatorError(
        f"{service.name} did not answer {url}{service.health_path} within "
        f"{service.startup_timeout_seconds:.0f} s; see {logfile}"
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_service(service: Service, state: Path) -> bool:
    """Stop the service (SIGTERM, then SIGKILL after its timeout). True if it was running.

    Holds the service's lock: a start in progress finishes first, and is then stopped.
    """
    with state_lock(state, service.name):
        pidfile = pidfile_path(service, state)
        process = _live_process(_read_pidfile(pidfile))
        if process is None:
            pidfile.unlink(missing_ok=True)
            log.info("%s is not running", service.name)
            return False
        _terminate(process.pid, service.stop_timeout_seconds)
        pidfile.unlink(missing_ok=True)
        log.info("%s stopped (pid %d)", service.name, process.pid)
        return True


def _terminate(pid: int, timeout_seconds: float) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    for sig, wait_seconds in ((signal.SIGTERM, timeout_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            _reap(pid)
            if not psutil.pid_exists(pid) or _is_zombie(pid):
                _reap(pid)
                return
            time.sleep(POLL_INTERVAL_SECONDS)
        if sig == signal.SIGTERM:
            log.warning("pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, wait_seconds)


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
