"""A tiny real model, its tarball, an endpoint in the emulator and local hosting serving it:
fixtures for every test area (a plugin of tests/conftest.py) and helpers to import.

The model is a resnet18 with random weights at 32 px: small enough to load in a second, real
enough that the handler, the workers and the clients run exactly the deployed code.
"""

from __future__ import annotations

import io
import tarfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LABELS = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier", "004.Akita",
          "005.Alaskan_malamute"]
IMAGE_SIZE = 32


def image_bytes(mode: str = "RGB", fmt: str = "JPEG", size: tuple[int, int] = (40, 32)) -> bytes:
    """A blank image of `mode`, encoded as `fmt`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()


def build_model_dir(target: Path, model_version: str = "test-1") -> Path:
    """A model directory in contract 3's layout, with seeded random weights."""
    import torch

    from breedops.modeling.architectures import build_model
    from breedops.training.packaging import write_model_dir

    torch.manual_seed(0)
    model = build_model("resnet18", len(LABELS))
    write_model_dir(target, model, arch="resnet18", classes=LABELS, image_size=IMAGE_SIZE,
                    model_version=model_version)
    return target


def tar_model_dir(model_dir: Path) -> bytes:
    """model.tar.gz bytes with the directory's files at the archive root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(model_dir)))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def model_tarball(model_dir: Path) -> bytes:
    return tar_model_dir(model_dir)


@dataclass
class Deployment:
    """An endpoint registered in the emulator and the hosting server that serves it."""

    endpoint_name: str
    bucket: str
    hosting_url: str
    server: object


def execution_role(bucket: str) -> str:
    """The bucket's SageMaker execution role (made once): hosting downloads the model as it."""
    import boto3
    from iam_roles import create_execution_role

    iam, name = boto3.client("iam"), f"{bucket}-execution"[:64]
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return create_execution_role(iam, name, bucket)


def register_endpoint(sagemaker, bucket: str, key: str, name: str,
                      instance_count: int = 1) -> None:
    """Model and endpoint config, as Terraform creates them (the model with an execution role
    that may read `bucket`)."""
    sagemaker.create_model(
        ModelName=name, ExecutionRoleArn=execution_role(bucket),
        PrimaryContainer={"Image": "pytorch-inference:2.5-cpu",
                          "ModelDataUrl": f"s3://{bucket}/{key}"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name,
                             "InitialInstanceCount": instance_count,
                             "InstanceType": "ml.m5.large"}],
    )


@pytest.fixture(scope="session")
def deployment(aws_emulator, model_tarball: bytes,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Upload the tiny model, create its endpoint, and run local hosting on a free port."""
    import boto3

    bucket = f"serving-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    key = "jobs/tiny/output/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=model_tarball)
    sagemaker = boto3.client("sagemaker")
    register_endpoint(sagemaker, bucket, key, "tiny-v1")
    sagemaker.create_endpoint(EndpointName="tiny", EndpointConfigName="tiny-v1")

    with local_hosting(tmp_path_factory.mktemp("hosting"), ttl_seconds=0.5) as (server, url):
        yield Deployment(endpoint_name="tiny", bucket=bucket, hosting_url=url, server=server)


@contextmanager
def local_hosting(cache_dir: Path, **registry_options: Any) -> Iterator[tuple[Any, str]]:
    """Local hosting on a free port, SageMaker Runtime clients pointed at it: (server, url)."""
    from breedops.local.hosting.registry import EndpointRegistry
    from breedops.local.hosting.server import HostingServer

    server = HostingServer(("127.0.0.1", 0),
                           registry=EndpointRegistry(cache_dir, **registry_options))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", url)
        try:
            yield server, url
        finally:
            server.shutdown()
            server.server_close()

