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
import dataclasses
import io
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ARCHITECTURES = ("resnet18", "resnet50")
IMAGE_SIZE = 224
NUM_CLASSES = 133
WARMUP_ROUNDS = 3
# Seconds between two paths, so that the previous path's threads are idle (see
# `measure_in_sequence`).
SETTLE_SECONDS = 1.0
# Then, before a path's turn, the machine must be this idle over a short window (or the wait
# gives up): what another process is still doing (a job's log flush, a model being loaded)
# would be timed as the path's own.
QUIET_IDLE_PERCENT = 90.0
QUIET_WINDOW_SECONDS = 0.5
QUIET_MAX_WAIT_SECONDS = 10.0
# Calls per path of the untimed round that precedes the timed ones (`measure_in_sequence`).
WARMUP_ROUND_CALLS = 10
# Each path's timed calls come in this many blocks, the paths taking turns (`measure_in_sequence`).
MEASURE_ROUNDS = 4


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
    """A private emulator plus local hosting, each a process of its own as `make up` starts
    them; yields the hosting URL with the env pointing there.

    Hosting is not a thread of the benchmark: its request threads would share one interpreter
    lock with the benchmark's clients, which on AWS are on another machine (measured: the bare
    endpoint called from here then answered slower than the Lambda calling it).
    """
    import boto3

    from breedops.local import emulator
    from breedops.local.credentials import SERVICE_TOKEN_VARIABLE

    services = work_dir / "services"
    service = emulator.emulator_service(port=emulator.free_port())
    running = emulator.start_service(service, services)
    secrets = emulator.emulator_credentials(service)
    hosting = emulator.hosting_service(port=emulator.free_port(), emulator_url=running.url,
                                       secrets=secrets)
    # Its model cache in the benchmark's folder, not the project's `.local`.
    hosting = dataclasses.replace(hosting, env={**hosting.env,
                                                "BREEDOPS_STATE_DIR": str(work_dir)})
    saved = dict(os.environ)
    try:
        emulator.start_service(hosting, services)
        # The bench deploys as the emulator's admin; hosting acts as SageMaker.
        os.environ.update({**secrets.admin_environment(), "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL": running.url,
                           "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": hosting.url,
                           SERVICE_TOKEN_VARIABLE: secrets.service_token})
        os.environ.pop("AWS_SESSION_TOKEN", None)
        # boto3's default session keeps the credentials it first resolved: each emulator has
        # its own, so every set of services starts (and leaves) with a fresh session.
        boto3.DEFAULT_SESSION = None
        yield hosting.url
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None
        emulator.stop_service(hosting, services)
        emulator.stop_service(service, services)


RUNTIMES = ("eager", "onnxruntime")
ONNX_FILE = "model.onnx"


def model_dir_for(arch: str, runtime: str, work_dir: Path) -> Path:
    """The extracted artifact for `arch` served by `runtime`: what packaging writes (its
    ONNX gate passed), with `model.onnx` (the handler serves it on ONNX Runtime) or without it
    (the handler serves `model.pth` eager); the same random weights either way."""
    import shutil

    import torch

    from breedops.modeling.architectures import build_model
    from breedops.training.packaging import write_model_dir

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    base = work_dir / arch
    if not (base / "model.pth").is_file():
        torch.manual_seed(0)  # the same weights for every runtime
        network = build_model(arch, NUM_CLASSES).eval()
        labels = [f"{i + 1:03d}.Breed_{i + 1}" for i in range(NUM_CLASSES)]
        write_model_dir(base, network, arch=arch, classes=labels, image_size=IMAGE_SIZE,
                        model_version=f"bench-{arch}")
    if not (base / ONNX_FILE).is_file():
        raise RuntimeError(f"packaging wrote no {ONNX_FILE} for {arch}: nothing to compare")
    model_dir = work_dir / f"{arch}-{runtime}"
    if not model_dir.is_dir():
        shutil.copytree(base, model_dir)
        if runtime == "eager":
            (model_dir / ONNX_FILE).unlink()
    return model_dir


def deploy(arch: str, work_dir: Path, runtime: str = "eager",
           models_dir: Path | None = None) -> str:
    """Package `arch` for `runtime` (into `models_dir`, shared between sections, else
    `work_dir`) and register it as an endpoint; returns its name."""
    import tarfile

    import boto3

    model_dir = model_dir_for(arch, runtime, models_dir or work_dir)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(model_dir)))
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    bucket = "breedops-bench"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    name = f"bench-{arch}-{runtime}"
    key = f"jobs/{name}/output/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=archive.getvalue())
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=_execution_role(bucket),
                           PrimaryContainer={"Image": "pytorch", "ModelDataUrl":
                                             f"s3://{bucket}/{key}"})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


def warm_endpoint(endpoint: str, image: bytes, timeout_s: float = 600.0) -> dict[str, Any]:
    """The first request, waited for however long the worker takes to download and load the
    model (minutes on a busy machine): no measured path or client timeout pays for it. Returns
    the response's JSON."""
    import boto3
    from botocore.config import Config

    client = boto3.client("sagemaker-runtime", config=Config(
        read_timeout=timeout_s, retries={"max_attempts": 1, "mode": "standard"}))
    response = client.invoke_endpoint(EndpointName=endpoint, ContentType="image/jpeg",
                                      Body=image)
    return json.loads(response["Body"].read())


def _execution_role(bucket: str) -> str:
    """A role SageMaker may assume that reads the bench's models (hosting downloads as it)."""
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
    from breedops.local.lambda_runner import FunctionSpec, LambdaRunner
    from breedops.serving.lambda_package import build_lambda_zip, lambda_source_dir

    zip_path = build_lambda_zip(source=lambda_source_dir(), target=work_dir / "lambda.zip")
    runner = LambdaRunner(FunctionSpec.from_zip(
        endpoint, zip_path, work_dir / "lambda", memory_mb=256,
        environment={"ENDPOINT_NAME": endpoint, "TOP_K": "3"}))
    try:
        yield runner, zip_path.stat().st_size
    finally:
        runner.close()


def forward_call(runtime: str, model_dir: Path, batch: Any, threads: int) -> Any:
    """The network alone for `runtime`, on the preprocessed image, at `threads` threads."""
    import torch

    if runtime == "onnxruntime":
        from breedops.training.onnx_export import INPUT_NAME, OUTPUT_NAME, runtime_session

        session = runtime_session(model_dir / ONNX_FILE, threads)  # as the handler opens it
        feed = {INPUT_NAME: batch.numpy()}
        return lambda: session.run([OUTPUT_NAME], feed)
    from breedops.modeling.architectures import load_model

    network = load_model(torch.load(model_dir / "model.pth", map_location="cpu",
                                    weights_only=True))

    def forward() -> None:
        with torch.inference_mode():
            network(batch)
    return forward


def measure_in_sequence(paths: dict[str, Any], requests: int, warmup: int = WARMUP_ROUNDS,
                        rounds: int = MEASURE_ROUNDS,
                        returned: dict[str, list[Any]] | None = None) -> dict[str, list[float]]:
    """Each path alone, one after the other, in `rounds` rounds: per round and path, warm-up
    calls then its share of the `requests` timed calls. `returned` (when given) gets each timed
    call's return value under its path.

    Not interleaved call by call: a path that follows one served by another process (the
    endpoint's worker, the Lambda runner) shares the cores with that process's OpenMP threads,
    which spin for a while after each forward pass; interleaving once made the handler look
    faster than the forward pass it contains. The pause lets the previous path's threads go
    idle. In rounds: a few seconds of other work on the machine (a process that just started,
    a flush to disk) then land in one block of one path's samples, not in all of them, so they
    cannot move its median past a path that contains it.
    """
    samples: dict[str, list[float]] = {name: [] for name in paths}
    # A whole untimed round first: the first requests of a fresh chain (a worker's first
    # forwards, the emulator's first authorisations, the Lambda runner's first calls) are
    # slower, and the first architecture measured once showed it in its endpoint figures.
    for call in paths.values():
        for _ in range(WARMUP_ROUND_CALLS):
            call()
    for block in range(rounds):
        share = requests // rounds + (1 if block < requests % rounds else 0)
        for name, call in paths.items():
            time.sleep(SETTLE_SECONDS)
            wait_until_quiet()
            for _ in range(warmup):
                call()
            for _ in range(share):
                started = time.perf_counter()
                value = call()
                samples[name].append((time.perf_counter() - started) * 1000)
                if returned is not None:
                    returned.setdefault(name, []).append(value)
    return samples


def wait_until_quiet(idle_percent: float = QUIET_IDLE_PERCENT,
                     window_s: float = QUIET_WINDOW_SECONDS,
                     max_wait_s: float = QUIET_MAX_WAIT_SECONDS) -> None:
    """Wait until the cores were `idle_percent` idle over `window_s`, at most `max_wait_s`."""
    import psutil

    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        if 100.0 - psutil.cpu_percent(interval=window_s) >= idle_percent:
            break
    else:
        logger.warning("the machine stayed busy for %.0f s; measuring anyway", max_wait_s)


def bench_architecture(arch: str, work_dir: Path, image: bytes, requests: int,
                       runtime: str = "eager", models_dir: Path | None = None) -> dict[str, Any]:
    """Every path for one model served by `runtime`, innermost first, the same JPEG through
    each, at the same thread count as the endpoint's single worker."""
    import boto3
    import torch

    from breedops.modeling.transforms import build_eval_transform
    from breedops.serving import inference

    threads = torch.get_num_threads()
    endpoint = deploy(arch, work_dir, runtime, models_dir)
    model_dir = model_dir_for(arch, runtime, models_dir or work_dir)
    model = inference.model_fn(str(model_dir))
    # The handler's own preprocessing of the same JPEG: the forward pass gets its tensor.
    batch = build_eval_transform(IMAGE_SIZE)(inference.input_fn(image, "image/jpeg")).unsqueeze(0)
    runtime_client = boto3.client("sagemaker-runtime")
    event = {"body": base64.b64encode(image).decode(), "isBase64Encoded": True,
             "headers": {"Content-Type": "image/jpeg"}}
    returned: dict[str, list[Any]] = {}

    def handler() -> None:
        data = inference.input_fn(image, "image/jpeg")
        inference.output_fn(inference.predict_fn(data, model), "application/json")

    def invoke_endpoint() -> None:
        runtime_client.invoke_endpoint(EndpointName=endpoint, ContentType="image/jpeg",
                                       Body=image)["Body"].read()

    warm_endpoint(endpoint, image)
    with lambda_runner_for(endpoint, work_dir) as (runner, package_bytes):
        cold = runner.invoke(event)
        if cold.status != 200:
            raise RuntimeError(f"the Lambda failed during the benchmark: {cold.payload}")

        def invoke_lambda() -> Any:
            return runner.invoke(event)

        paths = {"forward": forward_call(runtime, model_dir, batch, threads),
                 "handler": handler, "endpoint": invoke_endpoint,
                 "lambda_end_to_end": invoke_lambda}
        samples = measure_in_sequence(paths, requests, returned=returned)
    figures: dict[str, Any] = {"runtime": runtime, "threads": threads}
    figures.update({name: percentiles(values) for name, values in samples.items()})
    measured = returned["lambda_end_to_end"]
    figures["lambda_report_duration"] = percentiles([r.duration_ms for r in measured])
    figures["lambda_package_bytes"] = package_bytes
    figures["lambda_cold_init_ms"] = round(cold.init_ms or 0.0, 1)
    figures["lambda_max_memory_used_mb"] = max(r.max_memory_mb for r in [cold, *measured])
    return figures


def run_serving_benchmark(requests: int = 40, architectures: tuple[str, ...] = ARCHITECTURES,
                          runtimes: tuple[str, ...] = RUNTIMES,
                          models_dir: Path | None = None) -> dict[str, Any]:
    """Measure every architecture served by every runtime, one after the other, and check
    that no path is faster than one it contains (`breedops.bench.nesting`).

    Needs no running services: it starts a private emulator and local hosting of its own.
    """
    import torch

    from breedops.bench.nesting import check_nesting

    # The endpoint's one worker uses every core (hosting: cpu_count // workers); so do the
    # in-process paths, so that every path runs at the same thread count.
    torch.set_num_threads(os.cpu_count() or 1)
    image = photo_jpeg()
    results: dict[str, Any] = {"image_size": IMAGE_SIZE, "image_bytes": len(image),
                               "requests": requests, "warmup": WARMUP_ROUNDS,
                               "rounds": MEASURE_ROUNDS, "warmup_round_calls": WARMUP_ROUND_CALLS,
                               "threads": torch.get_num_threads(), "architectures": {}}
    with tempfile.TemporaryDirectory(prefix="breedops-bench-") as tmp, \
            local_services(Path(tmp)):
        for arch in architectures:
            results["architectures"][arch] = {}
            for runtime in runtimes:
                logger.info("benchmarking %s (%s) at %d px", arch, runtime, IMAGE_SIZE)
                results["architectures"][arch][runtime] = bench_architecture(
                    arch, Path(tmp), image, requests, runtime, models_dir)
    results["nesting"] = check_nesting(results["architectures"])
    return results
