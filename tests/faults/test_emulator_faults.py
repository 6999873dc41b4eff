"""Faults of the local emulator: a damaged journal, a kill -9, hostile web pages, racing
commands, a killed emulator's temporary files. Each runs the real services on loopback."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psutil
import pytest

from breedops.local import emulator
from breedops.local.services import (
    Service,
    free_port,
    start_service,
    stop_service,
)

pytestmark = pytest.mark.emulator

STARTUP_TIMEOUT_SECONDS = 60.0
COMMAND_TIMEOUT_SECONDS = 90.0
TRUST_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})
EVIL_ORIGIN = "http://evil.example"


@pytest.fixture(autouse=True)
def no_aws_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clients read no real AWS configuration; each test names its emulator explicitly."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def emulator_at(state: Path, port: int | None = None) -> Service:
    service = emulator.emulator_service(port=port or free_port(), state=state)
    return dataclasses.replace(service, startup_timeout_seconds=STARTUP_TIMEOUT_SECONDS)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def services_to_stop(state: Path) -> Iterator[list[Service]]:
    """Services a test started: stopped whatever the test did."""
    started: list[Service] = []
    yield started
    for service in started:
        stop_service(service, state)


def client(service: Service, name: str, endpoint_url: str | None = None):
    secrets = emulator.emulator_credentials(service)
    return boto3.session.Session(
        aws_access_key_id=secrets.access_key_id, aws_secret_access_key=secrets.secret_access_key,
        region_name="us-east-1").client(name, endpoint_url=endpoint_url or service.url)


def create_state(service: Service) -> None:
    s3, iam = client(service, "s3"), client(service, "iam")
    s3.create_bucket(Bucket="kept-bucket")
    s3.put_object(Bucket="kept-bucket", Key="notes/a.txt", Body=b"kept")
    iam.create_role(RoleName="kept-role", AssumeRolePolicyDocument=TRUST_POLICY,
                    Tags=[{"Key": "team", "Value": "ml"}])


def read_state(service: Service) -> dict:
    s3, iam = client(service, "s3"), client(service, "iam")
    return {
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
        "object": s3.get_object(Bucket="kept-bucket", Key="notes/a.txt")["Body"].read(),
        "role_tags": iam.list_role_tags(RoleName="kept-role")["Tags"],
    }


EXPECTED_STATE = {"buckets": ["kept-bucket"], "object": b"kept",
                  "role_tags": [{"Key": "team", "Value": "ml"}]}


def journal_file(state: Path) -> Path:
    return state / "emulator" / "journal" / "journal.jsonl"


def request(service: Service, method: str, path: str, headers: dict[str, str],
            body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request, with exactly the headers given (a browser's, a rebinding page's)."""
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host="Host" in headers,
                              skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# --- the journal -------------------------------------------------------------------------------

def tear_last_line(path: Path) -> int:
    """A crash mid-append: half of one more entry, no newline. Returns its line number."""
    lines = path.read_bytes().splitlines()
    entry = json.loads(lines[-1])
    entry["seq"] += 1
    half = json.dumps(entry).encode()[:40]
    path.write_bytes(path.read_bytes() + half)
    return len(lines) + 1


def garble_middle_line(path: Path) -> int:
    """A damaged line between two good ones. Returns its line number."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1] + [b'{"seq": 1, "method": "PU\xff\x00 garbage\n']
                              + lines[1:]))
    return 2


@pytest.mark.parametrize(("damage", "reason"), [
    (tear_last_line, "torn last line"),
    (garble_middle_line, "not UTF-8"),
])
def test_damaged_journal_line_is_skipped_and_the_rest_replays(state, services_to_stop, damage,
                                                               reason):
    service = emulator_at(state)
    services_to_stop.append(service)
    start_service(service, state)
    create_state(service)
    stop_service(service, state)
    line = damage(journal_file(state))

    start_service(service, state)
    after_damage = read_state(service)
    client(service, "s3").put_object(Bucket="kept-bucket", Key="notes/b.txt", Body=b"later")
    stop_service(service, state)
    start_service(service, state)  # the journal, rewritten, takes appends again
    later = client(service, "s3").get_object(Bucket="kept-bucket", Key="notes/b.txt")

    assert after_damage == EXPECTED_STATE
    assert later["Body"].read() == b"later"
    log = (state / "emulator.log").read_text()
    assert f"journal line {line} skipped: {reason}" in log
    rejected = [json.loads(x) for x in (journal_file(state).parent / "journal.rejected")
                .read_text().splitlines()]
    assert [(r["line"], r["reason"].startswith(reason)) for r in rejected] == [(line, True)]
    text = journal_file(state).read_text()
    assert text.endswith("\n") and all(json.loads(x) for x in text.splitlines())


def test_crash_between_body_and_line_sets_the_body_aside_and_never_reuses_its_seq(tmp_path):
    """A large body is written before its line: a crash between the two leaves a body that no
    entry names, and a torn line that names it."""
    from breedops.local.journal import INLINE_BODY_LIMIT, Journal

    directory = tmp_path / "journal"
    journal = Journal(directory)
    journal.append("PUT", "/kept-bucket", {}, b"")
    (directory / "bodies" / "00000001.bin").write_bytes(b"x" * (INLINE_BODY_LIMIT + 1))
    with (directory / "journal.jsonl").open("ab") as f:
        f.write(b'{"seq": 1, "method": "PUT", "uri": "/kept-bucket/big", "hea')

    reopened = Journal(directory)
    seq_after_crash = reopened.next_seq
    reopened.compact()
    reopened.append("PUT", "/kept-bucket/next", {}, b"y" * (INLINE_BODY_LIMIT + 1))

    assert seq_after_crash == 2  # 1 named a body file: its seed and its name are spent
    assert (directory / "bodies.rejected" / "00000001.bin").stat().st_size == INLINE_BODY_LIMIT + 1
    assert sorted(p.name for p in (directory / "bodies").iterdir()) == ["00000002.bin"]
    assert [e["seq"] for e, _ in Journal(directory).entries()] == [0, 2]


def test_acknowledged_put_survives_kill_9_and_was_fsynced_before_the_answer(state,
                                                                             services_to_stop):
    """kill -9 right after the answer loses nothing. A power loss would also drop what the
    kernel had not written: the trace shows the journal fsynced before the answer was sent."""
    if shutil.which("strace") is None or subprocess.run(
            ["strace", "-f", "-o", os.devnull, "true"], check=False, timeout=30).returncode:
        pytest.skip("strace cannot trace processes here")
    service = emulator_at(state)
    services_to_stop.append(service)
    trace = state / "strace.txt"
    traced = dataclasses.replace(service, argv=[
        "strace", "-f", "--seccomp-bpf", "-y", "-s", "16", "-e", "trace=fsync,sendto",
        "-o", str(trace), *service.argv])
    running = start_service(traced, state)
    client(service, "s3").create_bucket(Bucket="kept-bucket")
    client(service, "s3").put_object(Bucket="kept-bucket", Key="acknowledged", Body=b"durable")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and trace.read_text().count('"HTTP/1.1 200 OK') < 3:
        time.sleep(0.1)  # strace writes the answer's line just after it is sent
    lines = trace.read_text().splitlines()
    group = [psutil.Process(running.pid), *psutil.Process(running.pid).children(recursive=True)]
    os.killpg(running.pid, signal.SIGKILL)
    psutil.wait_procs(group, timeout=10)

    start_service(service, state)
    body = client(service, "s3").get_object(Bucket="kept-bucket", Key="acknowledged")["Body"]

    assert body.read() == b"durable"
    fsyncs = [i for i, x in enumerate(lines) if "fsync(" in x and "journal.jsonl>" in x]
    answers = [i for i, x in enumerate(lines) if '"HTTP/1.1 200 OK' in x]
    assert fsyncs, "the journal was never fsynced"
    assert len(fsyncs) == 2 and fsyncs[-1] < answers[-1]  # CreateBucket's, then PutObject's


# --- the front door ----------------------------------------------------------------------------

def test_cross_origin_requests_are_refused_and_change_nothing(state, services_to_stop):
    service = emulator_at(state)
    services_to_stop.append(service)
    start_service(service, state)
    client(service, "s3").create_bucket(Bucket="kept-bucket")

    preflight = request(service, "OPTIONS", "/moto-api/reset", {
        "Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "POST"})
    reset = request(service, "POST", "/moto-api/reset", {"Origin": EVIL_ORIGIN})
    form_post = request(service, "POST", "/moto-api/reset", {
        "Origin": "null", "Content-Type": "text/plain"}, b"x")
    no_origin = request(service, "POST", "/moto-api/reset", {"Sec-Fetch-Site": "cross-site"})
    other_local_port = request(service, "POST", "/moto-api/reset", {
        "Origin": f"http://127.0.0.1:{service.port + 1}"})
    own = request(service, "GET", "/_breedops/health", {
        "Origin": f"http://127.0.0.1:{service.port}", "Sec-Fetch-Site": "same-origin"})
    buckets = client(service, "s3").list_buckets()["Buckets"]
    stop_service(service, state)
    start_service(service, state)
    buckets_after_restart = client(service, "s3").list_buckets()["Buckets"]

    for status, headers, body in (preflight, reset, form_post, no_origin, other_local_port):
        assert status == 403
        assert not [h for h in headers if h.startswith("access-control-")]
        assert b"<Code>AccessDenied</Code>" in body
    assert b"cross-origin request from 'http://evil.example' refused" in reset[2]
    assert own[0] == 200 and not [h for h in own[1] if h.startswith("access-control-")]
    assert [b["Name"] for b in buckets] == ["kept-bucket"]
    assert [b["Name"] for b in buckets_after_restart] == ["kept-bucket"]


def test_foreign_host_is_refused_and_loopback_names_are_served(state, services_to_stop):
    service = emulator_at(state)
    services_to_stop.append(service)
    start_service(service, state)
    client(service, "s3").create_bucket(Bucket="kept-bucket")

    refused = {host: request(service, "POST", "/moto-api/reset", {"Host": host})[0]
               for host in (f"rebind.attacker.example:{service.port}", "evil.example",
                            f"127.0.0.1.attacker.example:{service.port}", "")}
    served = {host: request(service, "GET", "/_breedops/health", {"Host": host})[0]
              for host in (f"127.0.0.1:{service.port}", f"localhost:{service.port}",
                           f"[::1]:{service.port}", f"bucket.localhost:{service.port}",
                           "127.0.0.2")}
    # A client pointed at http://localhost:PORT works as one pointed at 127.0.0.1.
    by_name = client(service, "s3", f"http://localhost:{service.port}").list_buckets()

    assert set(refused.values()) == {403}, refused
    assert set(served.values()) == {200}, served
    assert [b["Name"] for b in by_name["Buckets"]] == ["kept-bucket"]


@pytest.mark.parametrize(("headers", "refused"), [
    ({"Host": "127.0.0.1:5566"}, False),
    ({"Host": "LOCALHOST:5566"}, False),
    ({"Host": "localhost.:5566"}, False),
    ({"Host": "[::1]:5566"}, False),
    ({"Host": "127.9.9.9"}, False),
    ({"Host": "build-box:5566"}, False),  # the address the service was told to bind
    ({}, False),  # no Host at all: no browser sends that
    ({"Host": "localhost.attacker.example:5566"}, True),
    ({"Host": "127.0.0.1.nip.io:5566"}, True),
    ({"Host": "attacker.example@127.0.0.1:5566"}, True),
    ({"Host": "[::ffff:7f00:1]x"}, True),
    ({"Host": "127.0.0.1", "Origin": "http://127.0.0.1:5566"}, False),
    ({"Host": "127.0.0.1", "Origin": "http://localhost:5566"}, False),
    ({"Host": "127.0.0.1", "Origin": "https://127.0.0.1:5566"}, True),
    ({"Host": "127.0.0.1", "Origin": "http://127.0.0.1:5567"}, True),
    ({"Host": "127.0.0.1", "Origin": "http://127.0.0.1"}, True),
    ({"Host": "127.0.0.1", "Origin": "http://127.0.0.1:5566/path"}, True),
    ({"Host": "127.0.0.1", "Origin": "null"}, True),
    ({"Host": "127.0.0.1", "Sec-Fetch-Site": "none"}, False),
    ({"Host": "127.0.0.1", "Sec-Fetch-Site": "same-origin"}, False),
    ({"Host": "127.0.0.1", "Sec-Fetch-Site": "same-site"}, True),  # another port of localhost
    ({"Host": "127.0.0.1", "Sec-Fetch-Site": "cross-site"}, True),
])
def test_front_door_decisions(headers, refused):
    from breedops.local.front_door import refusal

    lowered = {k.lower(): v for k, v in headers.items()}
    decision = refusal(lambda name: lowered.get(name.lower()), 5566, "build-box")

    assert (decision is not None) == refused, decision


def test_local_hosting_refuses_cross_origin_and_foreign_host(tmp_path, monkeypatch,
                                                             services_to_stop):
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path / "hosting-state"))
    hosting = emulator.hosting_service(port=free_port())
    state = tmp_path / "hosting-state"
    services_to_stop.append(hosting)
    start_service(dataclasses.replace(hosting, startup_timeout_seconds=STARTUP_TIMEOUT_SECONDS),
                  state)

    evil = request(hosting, "POST", "/endpoints/any/invocations", {
        "Origin": EVIL_ORIGIN, "Content-Type": "application/json"}, b"{}")
    rebound = request(hosting, "GET", "/ping", {"Host": f"rebind.attacker.example:{hosting.port}"})
    ping = request(hosting, "GET", "/ping", {"Host": f"127.0.0.1:{hosting.port}"})
    stop_service(hosting, state)

    assert evil[0] == 403 and b"cross-origin request" in evil[2]
    assert not [h for h in evil[1] if h.startswith("access-control-")]
    assert rebound[0] == 403
    assert ping[0] == 200


# --- racing commands ---------------------------------------------------------------------------

@pytest.fixture
def local_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """`python -m breedops local ACTION` as `make up`/`make down` run it, on private ports and
    state; every service it may have started is stopped afterwards."""
    state = tmp_path / "local-state"
    env = {**os.environ, "BREEDOPS_STATE_DIR": str(state),
           "BREEDOPS_EMULATOR_PORT": str(free_port()), "BREEDOPS_HOSTING_PORT": str(free_port())}
    processes: list[subprocess.Popen] = []

    def run(action: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "breedops", "local", action], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        return process

    run.state = state  # type: ignore[attr-defined]
    run.ports = (int(env["BREEDOPS_EMULATOR_PORT"]),  # type: ignore[attr-defined]
                 int(env["BREEDOPS_HOSTING_PORT"]))
    for name in ("BREEDOPS_STATE_DIR", "BREEDOPS_EMULATOR_PORT", "BREEDOPS_HOSTING_PORT"):
        monkeypatch.setenv(name, env[name])
    try:
        yield run
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        emulator.down(state)
        for process in service_processes(*run.ports):  # whatever escaped the pidfiles
            os.killpg(process.pid, signal.SIGKILL)


def service_processes(*ports: int) -> list[psutil.Process]:
    """Live emulator and hosting processes listening (or meant to) on these ports."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] == psutil.STATUS_ZOMBIE or "strace" in cmdline[:1]:
            continue
        module = next((a for a in cmdline if a.startswith("breedops.")), None)
        if module in ("breedops.local.server", "breedops.local.hosting.server") and any(
                str(p) in cmdline for p in ports):
            found.append(process)
    return found


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    return process.returncode, output


def test_two_concurrent_ups_start_one_emulator_and_one_hosting(local_command):
    first, second = local_command("up"), local_command("up")
    results = [finish(first), finish(second)]
    running = service_processes(*local_command.ports)
    states = {s.name: s for s in emulator.status(local_command.state)}
    stopped = finish(local_command("down"))

    assert [code for code, _ in results] == [0, 0], results
    assert all(s.running for s in states.values()), states  # the pidfiles name live processes
    assert sorted(p.pid for p in running) == sorted(s.pid for s in states.values()), running
    for _, output in results:  # both report the same processes
        assert f"emulator: running (pid {states['emulator'].pid})" in output
    assert stopped[0] == 0
    assert service_processes(*local_command.ports) == []


def test_down_racing_up_leaves_no_orphans(local_command):
    up = local_command("up")
    emulator_pidfile = local_command.state / "emulator.pid"
    deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
    while not emulator_pidfile.exists() and up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    down = local_command("down")  # while the emulator is still starting
    results = [finish(up), finish(down)]

    assert [code for code, _ in results] == [0, 0], results
    assert "stopped: " in results[1][1]  # down waited for up, then stopped what it started
    assert service_processes(*local_command.ports) == []
    assert not any(s.running for s in emulator.status(local_command.state))


# --- the temporary jobs dir --------------------------------------------------------------------

def stateless_emulator(tmp_dir: Path) -> Service:
    service = emulator.emulator_service(port=free_port())
    return dataclasses.replace(service, env={**service.env, "TMPDIR": str(tmp_dir)},
                               startup_timeout_seconds=STARTUP_TIMEOUT_SECONDS)


def jobs_dirs(tmp_dir: Path) -> list[Path]:
    return sorted(tmp_dir.glob("breedops-jobs-*"))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stateless_emulator_removes_its_jobs_dir_on_exit(tmp_path, services_to_stop, state,
                                                         stop_signal):
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    service = stateless_emulator(tmp_dir)
    services_to_stop.append(service)
    running = start_service(service, state)
    while_running = jobs_dirs(tmp_dir)
    os.killpg(running.pid, stop_signal)
    assert psutil.Process(running.pid).wait(timeout=20) == 0

    assert len(while_running) == 1
    assert jobs_dirs(tmp_dir) == []


def test_jobs_dir_of_a_killed_emulator_is_removed_by_the_next(tmp_path, services_to_stop, state):
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    (tmp_dir / "breedops-jobs-unrelated").mkdir()  # not an emulator's: left alone
    killed = stateless_emulator(tmp_dir)
    running = start_service(killed, state)
    killed_dirs = [d for d in jobs_dirs(tmp_dir)
                   if d.name.startswith(f"breedops-jobs-{running.pid}-")]
    os.killpg(running.pid, signal.SIGKILL)  # no chance to clean up
    psutil.Process(running.pid).wait(timeout=10)

    service = stateless_emulator(tmp_dir)
    services_to_stop.append(service)
    second = start_service(service, state)

    assert len(killed_dirs) == 1
    assert not killed_dirs[0].exists()
    assert [d.name.split("-")[2] for d in jobs_dirs(tmp_dir)] == [str(second.pid), "unrelated"]
