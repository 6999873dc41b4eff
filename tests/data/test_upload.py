"""Syncing a dataset to S3 (in-process moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from breedops.data.layout import DatasetError
from breedops.data.upload import upload_dataset


@pytest.fixture
def s3(aws_credentials: None):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="data-bucket")
        yield client


def _dataset(root: Path) -> Path:
    for split in ("train", "valid", "test"):
        for label, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (root / split / label).mkdir(parents=True)
            Image.new("RGB", (4, 4), colour).save(root / split / label / "x.png")
    return root


def test_upload_syncs_the_layout_and_skips_unchanged_files(s3, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds")
    assert upload_dataset(root, "data-bucket", "pets", s3=s3) == (6, 0)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="data-bucket")["Contents"]}
    assert "data/pets/valid/dog/x.png" in keys and len(keys) == 6
    Image.new("RGB", (4, 4), (0, 255, 0)).save(root / "train" / "cat" / "x.png")
    assert upload_dataset(root, "data-bucket", "pets", s3=s3) == (1, 5)


def test_upload_of_a_folder_without_splits_fails_before_uploading(s3, tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="dataset split not found"):
        upload_dataset(tmp_path / "flat", "data-bucket", "flat", s3=s3)
    assert "Contents" not in s3.list_objects_v2(Bucket="data-bucket")
