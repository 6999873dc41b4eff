"""Fixtures for the job tests: a bucket with the digits dataset in the emulator."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

TRAIN_PER_CLASS = 24


@pytest.fixture(scope="session")
def digits_bucket(aws_emulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bucket holding `data/digits/` (16-pixel renders: fast to train on)."""
    import boto3

    from breedops.data.prepare import render_digits
    from breedops.data.upload import upload_dataset

    root = tmp_path_factory.mktemp("jobs-data") / "digits"
    render_digits(root, image_size=16)
    # A subset: every job downloads its channels from the emulator, one GET per image.
    for split, keep in (("train", TRAIN_PER_CLASS), ("valid", 4), ("test", 4)):
        for folder in (root / split).iterdir():
            for extra in sorted(folder.iterdir())[keep:]:
                extra.unlink()
    bucket = f"jobs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    upload_dataset(root, bucket, "digits")
    return bucket


@pytest.fixture
def artifacts_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated project root, so the artifacts file lands under tmp_path."""
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def execution_role(digits_bucket: str) -> str:
    """An execution role that SageMaker may assume, allowed the job contract on the bucket."""
    import boto3
    from iam_roles import create_execution_role

    return create_execution_role(boto3.client("iam"), f"jobs-{uuid.uuid4().hex[:8]}",
                                 digits_bucket)
