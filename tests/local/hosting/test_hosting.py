"""Local hosting against real clients: boto3, the AWS CLI and the SageMaker SDK."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hosted_model import build_model_dir, register_endpoint, tar_model_dir
from PIL import Image

from breedops.serving import inference

pytestmark = pytest.mark.emulator


def jpeg_bytes(color: tuple[int, int, int] = (180, 40, 20), size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def direct_prediction(model_dir: Path, body: bytes, content_type: str) -> dict:
    """What the handler answers in-process: the reference every client must match."""
    model = inference.model_fn(str(model_dir))
    prediction = inference.predict_fn(inference.input_fn(body, content_type), model)
    return json.loads(inference.output_fn(prediction, "application/json"))


def runtime_client():
    import boto3

    return boto3.client("sagemaker-runtime")


def test_invoke_endpoint_boto3_matches_direct_call(deployment, model_dir):
    body = jpeg_bytes()
    response = runtime_client().invoke_endpoint(
        EndpointName=deployment.endpoint_name, ContentType="image/jpeg", Body=body,
        Accept="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(response["Body"].read()) == direct_prediction(model_dir, body, "image/jpeg")


def test_invoke_endpoint_json_request_with_top_k(deployment, model_dir):
    body = json.dumps({"image": base64.b64encode(jpeg_bytes()).decode()})
    response = runtime_client().invoke_endpoint(
        EndpointName=deployment.endpoint_name, ContentType="application/json", Body=body,
        CustomAttributes="top_k=2",
    )
    answer = json.loads(response["Body"].read())
    assert answer["predictions"] == direct_prediction(
        model_dir, jpeg_bytes(), "image/jpeg")["predictions"][:2]


def test_invoke_endpoint_aws_cli_matches_direct_call(deployment, model_dir, tmp_path):
    image = tmp_path / "dog.jpg"
    image.write_bytes(jpeg_bytes((10, 200, 30)))
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, "-m", "awscli", "sagemaker-runtime", "invoke-endpoint",
         "--endpoint-name", deployment.endpoint_name, "--content-type", "image/jpeg",
         "--body", f"fileb://{image}", str(out)],
        check=False, capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["InvokedProductionVariant"] == "AllTraffic"
    expected = direct_prediction(model_dir, image.read_bytes(), "image/jpeg")
    assert json.loads(out.read_text()) == expected


def test_invoke_endpoint_sagemaker_sdk_matches_direct_call(deployment, model_dir):
    from sagemaker.core.resources import Endpoint

    body = jpeg_bytes((90, 90, 200))
    # Not Endpoint.get(): moto's DescribeEndpoint answers an empty DataCaptureConfig that
    # sagemaker-core's model rejects; invoke needs only the name.
    from sagemaker.core.utils.utils import SageMakerClient

    # sagemaker-core caches its clients per process: drop any made for another test's hosting.
    SageMakerClient.reset()
    endpoint = Endpoint(endpoint_name=deployment.endpoint_name)
    response = endpoint.invoke(body=body, content_type="image/jpeg", accept="application/json")
    answer = json.loads(response.body.read())
    assert answer == direct_prediction(model_dir, body, "image/jpeg")


def test_invoke_endpoint_unknown_endpoint_gives_validation_error(deployment):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        runtime_client().invoke_endpoint(EndpointName="no-such-endpoint",
                                         ContentType="image/jpeg", Body=jpeg_bytes())
    error = raised.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == (
        "Endpoint no-such-endpoint of account 123456789012 not found.")
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(("content_type", "body", "status", "message"), [
    ("text/csv", b"1,2,3", 415, "unsupported content type"),
    ("image/jpeg", jpeg_bytes()[:200], 400, "not a decodable image"),
    ("image/jpeg", jpeg_bytes((1, 2, 3), (300, 300))[:900], 400, "truncated or corrupt"),
    ("image/png", b"", 400, "body is empty"),
])
def test_invoke_endpoint_bad_input_gives_model_error(deployment, content_type, body, status,
                                                     message):
    client = runtime_client()
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(EndpointName=deployment.endpoint_name, ContentType=content_type,
                               Body=body)
    error = raised.value.response
    assert error["OriginalStatusCode"] == status
    assert message in error["OriginalMessage"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    # The worker survived: the next good request is answered.
    ok = client.invoke_endpoint(EndpointName=deployment.endpoint_name, ContentType="image/jpeg",
                                Body=jpeg_bytes())
    assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_endpoint_changes_are_served_without_restart(deployment, tmp_path):
    import boto3

    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    key = "jobs/tiny-v2/output/model.tar.gz"
    s3.put_object(Bucket=deployment.bucket, Key=key,
                  Body=tar_model_dir(build_model_dir(tmp_path / "v2", model_version="test-2")))
    register_endpoint(sagemaker, deployment.bucket, key, "tiny-v2-config")
    sagemaker.create_endpoint(EndpointName="tiny-updated", EndpointConfigName="tiny-v1")
    client = runtime_client()

    def served() -> tuple[str, int]:
        response = client.invoke_endpoint(EndpointName="tiny-updated", ContentType="image/jpeg",
                                          Body=jpeg_bytes())
        _, pool = deployment.server.registry.pool_for("tiny-updated")
        return json.loads(response["Body"].read())["model_version"], pool.size

    def wait_for(expected: tuple[str, int]) -> None:
        # A roll-out downloads, extracts and loads the whole model.tar.gz (eager and ONNX
        # weights, the vendored runtime: ~110 MB here) while two cores are shared.
        deadline = time.monotonic() + 150
        while served() != expected:
            assert time.monotonic() < deadline, f"the endpoint never served {expected}"
            time.sleep(0.5)

    assert served() == ("test-1", 1)
    # moto 5.2 lacks UpdateEndpoint; a replaced endpoint is the same change for the hosting.
    sagemaker.delete_endpoint(EndpointName="tiny-updated")
    sagemaker.create_endpoint(EndpointName="tiny-updated", EndpointConfigName="tiny-v2-config")
    wait_for(("test-2", 1))
    # What Application Auto Scaling does on a scale-out.
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="tiny-updated",
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
    )
    wait_for(("test-2", 2))
    sagemaker.delete_endpoint(EndpointName="tiny-updated")


def test_container_contract_serves_one_model_dir(model_dir):
    import threading

    from breedops.local.hosting.server import build_server

    server = build_server("127.0.0.1", 0, model_dir=model_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=10) as ping:
            assert ping.status == 200
        request = urllib.request.Request(f"{url}/invocations", data=jpeg_bytes(),
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == direct_prediction(
                model_dir, jpeg_bytes(), "image/jpeg")
        bad = urllib.request.Request(f"{url}/invocations", data=b"x",
                                     headers={"Content-Type": "text/plain"})
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(bad, timeout=30)
        assert raised.value.code == 415
    finally:
        server.shutdown()
        server.server_close()


def test_build_server_rejects_dir_without_handler(tmp_path):
    from breedops.local.hosting.errors import HostingError
    from breedops.local.hosting.server import build_server

    with pytest.raises(HostingError, match="no code/inference.py"):
        build_server("127.0.0.1", 0, model_dir=tmp_path)


def test_invoke_endpoint_after_worker_crash_recovers(deployment):
    client = runtime_client()
    client.invoke_endpoint(EndpointName=deployment.endpoint_name, ContentType="image/jpeg",
                           Body=jpeg_bytes())
    _, pool = deployment.server.registry.pool_for(deployment.endpoint_name)
    worker = pool._idle[0]
    worker.process.kill()
    worker.process.wait()
    # The dead worker is found before it is given the request, which a fresh one answers.
    ok = client.invoke_endpoint(EndpointName=deployment.endpoint_name, ContentType="image/jpeg",
                                Body=jpeg_bytes())
    assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [w.process.pid for w in pool._idle] != [worker.process.pid]


def test_hosting_module_answers_ping_as_make_up_starts_it(aws_emulator, tmp_path):
    from breedops.local.emulator import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "breedops.local.hosting.server", "--host", "127.0.0.1",
         "--port", str(port)],
        env={**os.environ, "BREEDOPS_STATE_DIR": str(tmp_path)}, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as ping:
                    assert ping.status == 200
                    break
            except urllib.error.URLError:
                assert process.poll() is None, "hosting exited at start"
                assert time.monotonic() < deadline, "hosting never answered /ping"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nowhere", timeout=5)
        assert raised.value.code == 404
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_invoke_endpoint_missing_model_data_gives_service_unavailable(deployment):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    register_endpoint(boto3.client("sagemaker"), deployment.bucket, "jobs/none/model.tar.gz",
                      "no-model-data")
    boto3.client("sagemaker").create_endpoint(EndpointName="no-model-data",
                                              EndpointConfigName="no-model-data")
    client = boto3.client("sagemaker-runtime", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName="no-model-data", ContentType="image/jpeg",
                               Body=jpeg_bytes())
    boto3.client("sagemaker").delete_endpoint(EndpointName="no-model-data")
    assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert "cannot be read" in raised.value.response["Error"]["Message"]


def test_preload_loads_new_inservice_endpoint_before_any_request(deployment, tmp_path):
    import threading

    import boto3

    from breedops.local.hosting.registry import EndpointRegistry

    boto3.client("sagemaker").create_endpoint(EndpointName="tiny-preloaded",
                                              EndpointConfigName="tiny-v1")
    registry = EndpointRegistry(tmp_path)
    threading.Thread(target=registry.preload_forever, args=(0.2,), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while "tiny-preloaded" not in registry._pools:
            assert time.monotonic() < deadline, "the endpoint was never preloaded"
            time.sleep(0.2)
    finally:
        registry.close()
    assert registry._closed.is_set()


def test_worker_pool_retired_refuses_new_requests(model_dir):
    from breedops.local.hosting.workers import PoolRetiredError, WorkerPool

    pool = WorkerPool(model_dir, 1)
    header = {"content_type": "image/jpeg", "accept": None, "headers": {}}
    assert pool.invoke(header, jpeg_bytes()).status == 200
    worker = pool._idle[0]
    pool.retire()
    assert pool.join(timeout_seconds=30)
    assert not worker.alive()
    with pytest.raises(PoolRetiredError):
        pool.invoke(header, jpeg_bytes())


def test_answers_on_a_kept_alive_connection_are_not_held_by_nagle(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """An answer is two writes (headers, body). With Nagle's algorithm on, the body waits for
    the client's delayed ACK of the headers, at least 40 ms on Linux, on every request of a
    kept-alive connection (boto3's): the endpoint looked 40 ms slower than its model."""
    import http.client
    import threading

    from breedops.local.hosting.server import build_server

    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path))
    server = build_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1],
                                                timeout=10)
        took = []
        for _ in range(12):  # the first few ride on the connection's quick ACKs
            started = time.perf_counter()
            connection.request("GET", "/no-such-path")
            response = connection.getresponse()
            assert response.status == 404 and b"UnknownOperationException" in response.read()
            took.append(time.perf_counter() - started)
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    # Held back, every later answer takes >= 40 ms; the fastest is the test, not the median.
    assert min(took[4:]) < 0.03, [round(t * 1000, 1) for t in took]
