"""The local Lambda runtime (environments, concurrency limits, code unpacking) and the runner
over it, with small stand-in functions (no emulator needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from breedops.local.lambda_runner import FunctionSpec, LambdaRunner, LambdaRunnerError

FUNCTIONS = '''
import time

def sleepy(event, context):
    time.sleep(event["seconds"])
    return {"statusCode": 200, "remaining_ms": context.get_remaining_time_in_millis()}

def broken(event, context):
    raise KeyError("no such thing")
'''


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "functions.py").write_text(FUNCTIONS)
    return tmp_path


def runner_for(code_dir: Path, handler: str, **kwargs) -> LambdaRunner:
    return LambdaRunner(FunctionSpec(name="f", code_dir=code_dir, handler=handler, **kwargs))


def test_runner_invocation_reports_duration_and_warm_start(code_dir):
    runner = runner_for(code_dir, "functions.sleepy", memory_mb=512)
    try:
        cold = runner.invoke({"seconds": 0.05})
        warm = runner.invoke({"seconds": 0})
    finally:
        runner.close()
    assert cold.status == 200 and cold.duration_ms >= 50
    assert 0 < cold.payload["remaining_ms"] <= 30_000
    assert cold.init_ms is not None and warm.init_ms is None
    line = cold.report_line(512)
    assert line.startswith(f"REPORT RequestId: {cold.request_id}\tDuration: ")
    assert "Memory Size: 512 MB\tMax Memory Used: " in line and "Init Duration: " in line
    assert 0 < cold.max_memory_mb < 60


def test_runner_timeout_kills_environment_and_recovers(code_dir):
    runner = runner_for(code_dir, "functions.sleepy", timeout_s=0.5)
    try:
        timed_out = runner.invoke({"seconds": 5})
        after = runner.invoke({"seconds": 0})
    finally:
        runner.close()
    assert timed_out.status == 500 and timed_out.payload["errorType"] == "Sandbox.Timedout"
    assert timed_out.payload["errorMessage"] == (f"RequestId: {timed_out.request_id} Error: "
                                                 "Task timed out after 0.50 seconds")
    assert timed_out.report_line().endswith("\tStatus: timeout")
    assert after.status == 200 and after.init_ms is not None  # a fresh environment


def test_runner_unhandled_error_is_reported_not_fatal(code_dir):
    runner = runner_for(code_dir, "functions.broken")
    try:
        result = runner.invoke({})
        again = runner.invoke({})
    finally:
        runner.close()
    assert result.status == 500 and result.payload["errorType"] == "KeyError"
    assert result.payload["requestId"] == result.request_id  # the runtime's own error shape
    assert result.payload["errorMessage"] == "'no such thing'" and result.payload["stackTrace"]
    assert again.payload["errorType"] == "KeyError" and again.init_ms is None


def test_runner_unknown_handler_fails_to_initialise(code_dir):
    runner = runner_for(code_dir, "functions.missing")
    try:
        with pytest.raises(LambdaRunnerError,
                           match="failed to initialise: Runtime.HandlerNotFound"):
            runner.invoke({})
    finally:
        runner.close()


def test_idle_environments_are_reclaimed_but_provisioned_ones_stay(code_dir):
    from concurrent.futures import ThreadPoolExecutor

    from breedops.local.lambda_runtime import FunctionConfig, Pool

    pool = Pool(FunctionConfig(name="f", code_dir=code_dir, handler="functions.sleepy"),
                provisioned=1)
    try:
        with ThreadPoolExecutor(max_workers=3) as clients:  # three at once: three environments
            results = list(clients.map(lambda i: pool.invoke(f"r{i}", b'{"seconds": 0.3}', "arn"),
                                       range(3)))
        assert not any(r.failed for r in results) and pool.size == 3
        assert pool.reap(idle_s=3600) == 0  # none idle for long yet
        assert pool.reap(idle_s=0) == 2 and pool.size == 1  # the provisioned one stays
        again = pool.invoke("r4", b'{"seconds": 0}', "arn")
        assert not again.failed and again.init_ms is None  # and serves warm
    finally:
        pool.close_all()


def test_unpack_code_once_per_content_and_bad_zip_is_refused(tmp_path):
    import io
    import zipfile

    from breedops.local.lambda_runtime import InvalidZipFile, unpack_code

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("functions.py", FUNCTIONS)
    first = unpack_code(buffer.getvalue(), tmp_path / "code")
    assert (first / "functions.py").read_text() == FUNCTIONS
    assert unpack_code(buffer.getvalue(), tmp_path / "code") == first
    with pytest.raises(InvalidZipFile, match="Lambda was unable to unzip the code"):
        unpack_code(b"not a zip", tmp_path / "code")
    assert [p.name for p in (tmp_path / "code").iterdir()] == [first.name]  # nothing left over


def test_concurrency_throttles_reserved_and_unreserved_invocations_with_lambdas_reason():
    from breedops.local.lambda_runtime import Concurrency, Throttled

    limits = Concurrency()
    reserved = limits.reserve("f", 1)
    with pytest.raises(Throttled, match="ReservedFunctionConcurrentInvocationLimitExceeded"):
        limits.reserve("f", 1)
    shared = limits.reserve("g", None, "account", unreserved_limit=1)
    with pytest.raises(Throttled, match="^ConcurrentInvocationLimitExceeded$"):
        limits.reserve("h", None, "account", unreserved_limit=1)
    reserved()
    reserved()  # a second release changes nothing
    shared()
    limits.reserve("f", 1)
    limits.reserve("h", None, "account", unreserved_limit=1)
    with pytest.raises(Throttled):
        limits.reserve("f", 1)
