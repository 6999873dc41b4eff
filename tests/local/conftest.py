"""Fixtures for the emulator's own tests: clients of the session emulator and a test function."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator

import pytest

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


def lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def create_function(name: str, publish: bool = True) -> dict:
    """A Lambda function with a role of its own, published as version 1."""
    import boto3

    role = boto3.client("iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY)
    )["Role"]["Arn"]
    return boto3.client("lambda").create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
        Code={"ZipFile": lambda_zip()}, Publish=publish,
    )


@pytest.fixture
def make_function():
    """`create_function` for tests that need a function outside the session emulator's fixtures."""
    return create_function


@pytest.fixture
def unique_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def function_with_alias(aws_emulator: object, unique_name: str) -> Iterator[str]:
    """A published function with the alias `live` on version 1; yields the function name."""
    import boto3

    create_function(unique_name)
    boto3.client("lambda").create_alias(
        FunctionName=unique_name, Name="live", FunctionVersion="1"
    )
    yield unique_name
