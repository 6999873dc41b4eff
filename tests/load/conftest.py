"""A tiny model behind local hosting, registered under its own endpoint name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hosted_model import build_model_dir, local_hosting, register_endpoint, tar_model_dir


@dataclass(frozen=True)
class LoadDeployment:
    endpoint_name: str
    hosting_url: str


@pytest.fixture(scope="module")
def load_deployment(aws_emulator, tmp_path_factory) -> Iterator[LoadDeployment]:
    """Upload the serving tests' tiny model, create an endpoint, serve it on a free port."""
    import boto3

    suffix = uuid.uuid4().hex[:8]
    bucket, name = f"load-{suffix}", f"load-{suffix}"
    key = "jobs/tiny/output/model.tar.gz"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key,
                  Body=tar_model_dir(build_model_dir(tmp_path_factory.mktemp("load-model"))))
    sagemaker = boto3.client("sagemaker")
    register_endpoint(sagemaker, bucket, key, name)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    with local_hosting(tmp_path_factory.mktemp("load-hosting")) as (_, url):
        yield LoadDeployment(endpoint_name=name, hosting_url=url)
