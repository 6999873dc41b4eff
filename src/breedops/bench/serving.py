"""Serving benchmark: model forward alone, the local endpoint, and the Lambda end to end.

For each architecture (random weights: the figures are about latency, not accuracy) it
measures p50 and p99 of
- the network's forward pass on one preprocessed image,
- the handler in-process (decode, transform, forward, JSON),
- `InvokeEndpoint` through boto3 against local hosting (one worker),
- the Lambda through the local runner (its handler calling that endpoint),
plus the Lambda package size, its cold initialisation and its Max Memory Used.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import statistics
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ARCHITECTURES = ("resnet18", "resnet50")
IMAGE_SIZE = 224
NUM_CLASSES = 133
WARMUP_ROUNDS = 3


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50, p90 and p99 (nearest rank) in milliseconds, and the minimum: on a shared machine
    the minimum is the estimate of a path's own cost that other load disturbs least."""
    ordered = sorted(samples_ms)

    def nearest_rank(q: float) -> float:
        return round(ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))], 2)

    return {"p50_ms": round(statistics.median(ordered), 2), "p90_ms": nearest_rank(0.90),
            "p99_ms": nearest_rank(0.99), "min_ms": round(ordered[0], 2)}


def photo_jpeg() -> bytes:
    """A 640x480 JPEG with structure, the size of a typical phone upload after resizing."""
    from PIL import Image

    image = Image.radial_gradient("L").resize((640, 480)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@contextmanager
def local_services(work_dir: Path) -> Iterator[str]:
    """A private emulator plus local hosting; yields the hosting URL with the env pointing there."""
    from breedops.local import emulator
    from breedops.local.credentials import SERVICE_TOKEN_VARIABLE
    from breedops.serving.hosting import EndpointRegistry, HostingServer

    service = emulator.emulator_service(port=emulator.free_port())
    running = emulator.start_service(service, work_dir / "emulator")
    secrets = emulator.emulator_credentials(service)
    saved = dict(os.environ)
    # The bench deploys as the emulator's admin; hosting (in process) acts as SageMaker.
    os.environ.update({**secrets.admin_environment(), "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": running.url,
                       SERVICE_TOKEN_VARIABLE: secrets.service_token})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    server = HostingServer(("127.0.0.1", 0), registry=EndpointRegistry(work_dir / "hosting"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = url
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        os.environ.clear()
        os.environ.update(saved)
        emulator.stop_service(service, work_dir / "emulator")


def deploy(arch: str, work_dir: Path) -> str:
    """Package a random-weight model and register it as an endpoint; returns its name."""
    import tarfile

    import boto3
    import torch

    from breedops.modeling.architectures import build_model
    from breedops.training.packaging import write_model_dir

    model_dir = work_dir / arch
    labels = [f"{i + 1:03d}.Breed_{i + 1}" for i in range(NUM_CLASSES)]
    write_model_dir(model_dir, build_model(arch, NUM_CLASSES), arch=arch, classes=labels,
                    image_size=IMAGE_SIZE, model_version=f"bench-{arch}")
    torch.manual_seed(0)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(model_dir)))
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    bucket = "breedops-bench"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    key = f"jobs/bench-{arch}/output/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=archive.getvalue())
    name = f"bench-{arch}"
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=_execution_role(bucket),
                           PrimaryContainer={"Image": "pytorch", "ModelDataUrl":
                                             f"s3://{bucket}/{key}"})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


def _execution_role(bucket: str) -> str:
    """A role SageMaker may assume that reads the bench's models (hosting downloads as it)."""
    import json

    import boto3

    iam, name = boto3.client("iam"), "breedops-bench-hosting"
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        pass
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name,
                          AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="read-models", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/jobs/*"}]}))
    return arn


@contextmanager
def lambda_runner_for(endpoint: str, work_dir: Path) -> Iterator[tuple[Any, int]]:
    """A runner for the built Lambda package, calling `endpoint`; yields it and the zip size."""
    from breedops.serving.lambda_package import build_lambda_zip, lambda_source_dir
    from breedops.serving.lambda_runner import FunctionSpec, LambdaRunner

    zip_path = build_lambda_zip(source=lambda_source_dir(), target=work_dir / "lambda.zip")
    code_dir = work_dir / f"lambda-{endpoint}"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(code_dir)
    runner = LambdaRunner(FunctionSpec(name=endpoint, code_dir=code_dir, memory_mb=256,
                                       environment={"ENDPOINT_NAME": endpoint, "TOP_K": "3"}))
    try:
        yield runner, zip_path.stat().st_size
    finally:
        runner.close()


def bench_architecture(arch: str, work_dir: Path, image: bytes, requests: int) -> dict[str, Any]:
    """Every path for one model, measured in interleaved rounds so that a busy machine slows
    all of them alike instead of whichever ran while it was busy."""
    import boto3
    import torch

    from breedops.serving import inference

    endpoint = deploy(arch, work_dir)
    model = inference.model_fn(str(work_dir / arch))
    batch = model.transform(inference.input_fn(image, "image/jpeg")).unsqueeze(0)
    runtime = boto3.client("sagemaker-runtime")
    event = {"body": base64.b64encode(image).decode(), "isBase64Encoded": True,
             "headers": {"Content-Type": "image/jpeg"}}
    lambda_results = []

    def forward() -> None:
        with torch.inference_mode():
            model.network(batch)

    def handler() -> None:
        data = inference.input_fn(image, "image/jpeg")
        inference.output_fn(inference.predict_fn(data, model), "application/json")

    def invoke_endpoint() -> None:
        runtime.invoke_endpoint(EndpointName=endpoint, ContentType="image/jpeg",
                                Body=image)["Body"].read()

    with lambda_runner_for(endpoint, work_dir) as (runner, package_bytes):
        cold = runner.invoke(event)  # also loads the endpoint's worker
        if cold.status != 200:
            raise RuntimeError(f"the Lambda failed during the benchmark: {cold.payload}")

        def invoke_lambda() -> None:
            lambda_results.append(runner.invoke(event))

        paths = {"forward": forward, "handler": handler, "endpoint": invoke_endpoint,
                 "lambda_end_to_end": invoke_lambda}
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for round_index in range(requests + WARMUP_ROUNDS):
            for name, call in paths.items():
                started = time.perf_counter()
                call()
                if round_index >= WARMUP_ROUNDS:
                    samples[name].append((time.perf_counter() - started) * 1000)
    figures: dict[str, Any] = {name: percentiles(values) for name, values in samples.items()}
    measured = lambda_results[WARMUP_ROUNDS:]
    figures["lambda_report_duration"] = percentiles([r.duration_ms for r in measured])
    for baseline in ("forward", "handler"):
        for statistic in ("p50_ms", "min_ms"):
            figures[f"endpoint_overhead_vs_{baseline}_{statistic.removesuffix('_ms')}"] = round(
                figures["endpoint"][statistic] / figures[baseline][statistic] - 1, 3)
    figures["lambda_package_bytes"] = package_bytes
    figures["lambda_cold_init_ms"] = round(cold.init_ms or 0.0, 1)
    figures["lambda_max_memory_used_mb"] = max(r.max_memory_mb for r in [cold, *lambda_results])
    return figures


def run_serving_benchmark(requests: int = 40, architectures: tuple[str, ...] = ARCHITECTURES,
                          output: Path | None = None) -> dict[str, Any]:
    """Measure every architecture; write the figures as JSON to `output` when given.

    Needs no running services: it starts a private emulator and local hosting of its own.
    """
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    image = photo_jpeg()
    results: dict[str, Any] = {"image_size": IMAGE_SIZE, "requests": requests,
                               "cpu_count": os.cpu_count(), "architectures": {}}
    with tempfile.TemporaryDirectory(prefix="breedops-bench-") as tmp, \
            local_services(Path(tmp)):
        for arch in architectures:
            logger.info("benchmarking %s at %d px", arch, IMAGE_SIZE)
            results["architectures"][arch] = bench_architecture(arch, Path(tmp), image, requests)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run_serving_benchmark(), indent=2))
