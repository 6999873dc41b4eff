"""Local hosting under faults: hostile Content-Lengths, slow clients, a hung model, a worker that
cannot restart, an endpoint rolled over under load, oversized and unsafe model archives.

Everything is real: hosting servers on 127.0.0.1 in this process, model worker processes, raw
sockets that send only what a test says, SIGKILL, the session emulator (IAM enforced) behind
the Runtime API. The model is a tiny JSON echo whose handler can hang, sleep or refuse to load,
so the faults are the model's, exactly as a deployed handler would produce them. The timeouts
are shortened through the same arguments that carry SageMaker's defaults.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hosted_model import execution_role, register_endpoint, tar_model_dir

from breedops.local.hosting.registry import EndpointRegistry
from breedops.local.hosting.server import HostingServer, build_server
from breedops.local.hosting.workers import TIMEOUT_MESSAGE

INVOCATION_TIMEOUT = 4.0  # SageMaker's is 60 s
REQUEST_TIMEOUT = 1.5  # hosting's default is 20 s
SLACK = 3.0  # what a loaded 2-core machine may add to a bound
WORKER_START = 60.0  # a worker imports torch: seconds on a 2-core machine under load
MAX_MODEL_BYTES = 1024 * 1024
ROLLOVER_LATENCY = 3.5  # the slowest answer during a rollover: 0.25 s measured

HANDLER = '''"""A JSON echo that hangs, sleeps or fails to load on demand."""
import atexit
import json
import os
import time

VERSION = {version!r}
atexit.register(time.sleep, {exit_seconds!r})  # a model whose shutdown takes this long


def model_fn(model_dir):
    if os.path.exists(os.path.join(model_dir, "fail-load")):
        raise RuntimeError("told to fail loading")
    return {{"pid": os.getpid()}}


def input_fn(body, content_type):
    return json.loads(body or b"{{}}")


def predict_fn(data, model):
    if data.get("hang"):
        time.sleep(3600)
    time.sleep(float(data.get("sleep", 0)))
    return {{"pid": model["pid"], "n": data.get("n"), "version": VERSION}}


def output_fn(prediction, accept):
    return json.dumps(prediction)
'''


def echo_model_dir(target: Path, version: str = "v1", exit_seconds: float = 0) -> Path:
    (target / "code").mkdir(parents=True)
    (target / "code" / "inference.py").write_text(
        HANDLER.format(version=version, exit_seconds=exit_seconds))
    return target


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def exited(pid: int) -> bool:
    """The process is gone, or dead and not yet reaped. A killed process's main thread turns
    zombie before its other threads (torch's) have exited; only then can it be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return True
    return state in ("Z", "X") and threads <= 1


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.1)


def raw_request(port: int, head: bytes,
                timeout: float = 10) -> tuple[http.client.HTTPResponse, bytes, float]:
    """Send exactly `head` (no body), read the answer; and how long it took."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        start = time.monotonic()
        sock.sendall(head)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response, response.read(), time.monotonic() - start
    finally:
        sock.close()


# --- the container contract: one model directory, one worker ---------------------------------

@dataclass
class Container:
    port: int
    model_dir: Path
    server: HostingServer

    def invoke(self, payload: dict, timeout: float = 30) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", "/invocations", body=json.dumps(payload),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    model_dir = echo_model_dir(tmp_path_factory.mktemp("echo-container"))
    server = build_server("127.0.0.1", 0, model_dir=model_dir, workers=1,
                          invocation_timeout_seconds=INVOCATION_TIMEOUT,
                          request_timeout_seconds=REQUEST_TIMEOUT)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Container(port=server.server_address[1], model_dir=model_dir, server=server)
    finally:
        server.shutdown()
        server.server_close()


# --- the Runtime API: endpoints in the emulator --------------------------------------------

@dataclass
class Runtime:
    port: int
    bucket: str
    cache_dir: Path
    suffix: str

    def client(self, read_timeout: float = 2 * WORKER_START):
        """A Runtime client that waits long enough for a first load (timing is asserted apart)."""
        return boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{self.port}",
                            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                          read_timeout=read_timeout, max_pool_connections=64))

    def deploy(self, name: str, body: bytes, instance_count: int = 1,
               endpoint: str | None = None) -> str:
        """An endpoint configuration `name` for a model tarball (and an endpoint on it)."""
        key = f"models/{name}/model.tar.gz"
        boto3.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)
        register_endpoint(boto3.client("sagemaker"), self.bucket, key, name, instance_count)
        if endpoint:
            boto3.client("sagemaker").create_endpoint(EndpointName=endpoint,
                                                      EndpointConfigName=name)
        return name


@pytest.fixture(scope="module")
def runtime(aws_emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    suffix = uuid.uuid4().hex[:8]
    bucket = f"hosting-faults-{suffix}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    execution_role(bucket)
    cache_dir = tmp_path_factory.mktemp("faults-hosting")
    server = HostingServer(
        ("127.0.0.1", 0),
        registry=EndpointRegistry(cache_dir, ttl_seconds=0.3,
                                  invocation_timeout_seconds=INVOCATION_TIMEOUT,
                                  max_model_bytes=MAX_MODEL_BYTES),
        request_timeout_seconds=REQUEST_TIMEOUT)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Runtime(port=server.server_address[1], bucket=bucket, cache_dir=cache_dir,
                      suffix=suffix)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def echo_endpoint(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An endpoint of two workers serving the echo model."""
    name = f"echo-{runtime.suffix}"
    body = tar_model_dir(echo_model_dir(tmp_path_factory.mktemp("echo-v1")))
    runtime.deploy(name, body, instance_count=2, endpoint=name)
    invoke(runtime.client(), name, {"n": 0})  # loaded before any test times it
    return name


def invoke(client, endpoint: str, payload: dict) -> dict:
    response = client.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                      Body=json.dumps(payload))
    return json.loads(response["Body"].read())


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content_length", "status", "message"), [
    ("-1", 400, "is not a byte count"),
    (None, 411, "Content-Length header is required"),
    ("twelve", 400, "is not a byte count"),
    (str(10 * 1024**3), 413, "the limit is 6291456 bytes"),
])
@pytest.mark.parametrize("where", ["container", "runtime"])
def test_bad_content_length_is_refused_without_reading_the_body(request, where, content_length,
                                                                status, message):
    if where == "container":
        port, path = request.getfixturevalue("container").port, "/invocations"
    else:
        port = request.getfixturevalue("runtime").port
        path = f"/endpoints/{request.getfixturevalue('echo_endpoint')}/invocations"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if content_length is not None:
        head += f"Content-Length: {content_length}\r\n"
    # The body is never sent: only an answer given without reading it can come back.
    response, body, elapsed = raw_request(port, (head + "\r\n").encode())
    assert response.status == status
    assert response.getheader("x-amzn-ErrorType") == "ValidationError"
    assert message in json.loads(body)["message"]
    assert response.getheader("Connection") == "close"  # the unread body is not a request
    assert elapsed < SLACK


@pytest.mark.parametrize("sending", ["half a header", "a header byte by byte", "half a body"])
def test_slow_client_is_cut_off(container, sending):
    sock = socket.create_connection(("127.0.0.1", container.port), timeout=REQUEST_TIMEOUT + 10)
    stop = threading.Event()

    def trickle() -> None:  # one byte at a time, each well inside a socket read's timeout
        try:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nX-Padding: ")
            while not stop.wait(REQUEST_TIMEOUT / 5):
                sock.sendall(b"a")
        except OSError:  # cut off
            pass

    start = time.monotonic()
    if sending == "half a header":
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    elif sending == "half a body":
        sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"n\": ")
    else:
        threading.Thread(target=trickle, daemon=True).start()
    try:
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        sock.close()
    assert answer == b"", answer
    assert REQUEST_TIMEOUT - 0.2 <= elapsed <= REQUEST_TIMEOUT + SLACK
    assert json.loads(container.invoke({"n": 1})[1])["n"] == 1  # the server serves on


def test_hung_model_times_out_while_50_clients_are_served(runtime, echo_endpoint):
    client = runtime.client()
    with ThreadPoolExecutor(max_workers=52) as pool:
        # Two requests at once hold both workers: their pids are the pool.
        workers = {answer["pid"] for answer in pool.map(
            lambda n: invoke(client, echo_endpoint, {"n": n, "sleep": 0.5}), range(2))}
        assert len(workers) == 2

        def hung() -> tuple[ClientError | None, float]:
            start = time.monotonic()
            try:
                invoke(client, echo_endpoint, {"hang": True})
            except ClientError as e:
                return e, time.monotonic() - start
            return None, time.monotonic() - start

        hanging = pool.submit(hung)
        time.sleep(0.5)  # it holds a worker now
        answers = list(pool.map(lambda n: invoke(client, echo_endpoint, {"n": n}), range(50)))
        error, elapsed = hanging.result(timeout=2 * WORKER_START + 10)

    assert [answer["n"] for answer in answers] == list(range(50))
    served_by = {answer["pid"] for answer in answers}
    assert len(served_by) == 1 and served_by < workers
    assert error is not None, "the hung invocation was answered"
    response = error.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 0
    assert response["OriginalMessage"] == TIMEOUT_MESSAGE
    assert response["Error"]["Message"].startswith(
        f'Received server error (0) from primary with message "{TIMEOUT_MESSAGE}"')
    assert INVOCATION_TIMEOUT - 0.2 <= elapsed <= INVOCATION_TIMEOUT + SLACK

    (hung_pid,) = workers - served_by
    wait_until(lambda: exited(hung_pid), 10, "the hung worker was killed")
    # Capacity is back: two requests at once are answered by the survivor and a fresh worker.
    with ThreadPoolExecutor(max_workers=2) as pool:
        deadline = time.monotonic() + WORKER_START
        while True:
            now_serving = {answer["pid"] for answer in pool.map(
                lambda n: invoke(client, echo_endpoint, {"n": n, "sleep": 0.5}), range(2))}
            if len(now_serving) == 2:
                break
            assert time.monotonic() < deadline, "the hung worker was never replaced"
    assert served_by < now_serving and hung_pid not in now_serving


def test_worker_that_cannot_restart_is_retried_until_it_does(container, caplog):
    _, body = container.invoke({"n": 1})
    pid = json.loads(body)["pid"]
    flag = container.model_dir / "fail-load"
    flag.touch()
    with caplog.at_level(logging.ERROR, logger="breedops.local.hosting"):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: exited(pid), 10, "the worker died")
        # Nothing can serve while no worker loads: the request times out, as SageMaker's would.
        status, body = container.invoke({"n": 2})
        assert (status, body.decode()) == (504, TIMEOUT_MESSAGE)
        wait_until(lambda: "could not restart a worker" in caplog.text, WORKER_START,
                   "a failed restart was logged")
    flag.unlink()
    deadline = time.monotonic() + WORKER_START
    while (answer := container.invoke({"n": 3}))[0] != 200:
        assert time.monotonic() < deadline, "the slot was lost: no worker came back"
    assert json.loads(answer[1])["pid"] != pid


def test_update_endpoint_under_load_loses_no_request(runtime, tmp_path):
    name = f"rolling-{runtime.suffix}"
    # The old model is slow to shut down, as a real one can be: its exit is no request's wait.
    runtime.deploy(f"{name}-v1", tar_model_dir(echo_model_dir(tmp_path / "v1", "v1", 10)),
                   instance_count=2, endpoint=name)
    runtime.deploy(f"{name}-v2", tar_model_dir(echo_model_dir(tmp_path / "v2", "v2")))
    client = runtime.client()
    stop = threading.Event()
    answers: list[tuple[float, str, int]] = []  # (seconds taken, version, worker)
    errors: list[Exception] = []

    def load(n: int) -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                answer = invoke(client, name, {"n": n, "sleep": 0.01})
                answers.append((time.monotonic() - start, answer["version"], answer["pid"]))
            except Exception as e:  # noqa: BLE001 (every failure is what the test counts)
                errors.append(e)

    invoke(client, name, {"n": 0})  # loaded
    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(12)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        boto3.client("sagemaker").update_endpoint(EndpointName=name,
                                                  EndpointConfigName=f"{name}-v2")
        wait_until(lambda: any(version == "v2" for _, version, _ in answers[-20:]),
                   2 * WORKER_START,
                   "the endpoint served the new model")
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=INVOCATION_TIMEOUT + 30)
    assert errors == []
    assert {version for _, version, _ in answers} == {"v1", "v2"}
    # No request waits for a retired worker to exit (before issue 13 the last request of each
    # waited, here 5 s: until hosting gave up and killed it).
    assert max(taken for taken, _, _ in answers) < ROLLOVER_LATENCY
    old_workers = {pid for _, version, pid in answers if version == "v1"}
    # Every worker of the retired model exits once its requests are answered.
    wait_until(lambda: all(exited(pid) for pid in old_workers), 30,
               "the old model's workers exited")
    assert invoke(client, name, {"n": 1})["version"] == "v2"


@pytest.mark.parametrize(("members", "message"), [
    ({"code/inference.py": b"", "model.pth": b"\0" * (MAX_MODEL_BYTES + 1)},
     f"larger than {MAX_MODEL_BYTES} bytes uncompressed"),
    ({"code/inference.py": b"", "../escaped.txt": b"out"}, "has an unsafe member"),
])
def test_bad_model_archive_is_refused_and_leaves_nothing(runtime, members, message):
    name = f"bad-model-{uuid.uuid4().hex[:6]}"
    runtime.deploy(name, tarball(members), endpoint=name)
    with pytest.raises(ClientError) as raised:
        invoke(runtime.client(), name, {"n": 1})
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ServiceUnavailable", 503)
    assert message in error["Error"]["Message"]
    assert not list(runtime.cache_dir.glob("*.partial-*"))
    assert not (runtime.cache_dir / "escaped.txt").exists()


def test_stale_partial_extractions_are_swept_at_start(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          check=True, capture_output=True, text=True, timeout=30)
    dead_pid = int(gone.stdout)
    stale = [tmp_path / f"0123abcd.partial-{dead_pid}-1a2b3c4d",
             tmp_path / "0123abcd.partial-1a2b3c4d"]  # the name before the owner's pid
    for leftover in stale:
        (leftover / "code").mkdir(parents=True)
    stale_archive = tmp_path / f"0123abcd.partial-{dead_pid}-1a2b3c4d.tar.gz"
    stale_archive.write_bytes(b"torn")
    running = tmp_path / f"4567cdef.partial-{os.getpid()}-5e6f7a8b"  # a live extraction
    running.mkdir()
    (tmp_path / "89abcdef").mkdir()  # a finished model

    EndpointRegistry(tmp_path)

    assert {p.name for p in tmp_path.iterdir()} == {"89abcdef", running.name}
