"""The training source tarball for the EC2 instance: reproducible, the staged source, idempotent."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from breedops.jobs import source_bundle
from breedops.jobs.sagemaker_backend import ENTRY_SCRIPT, stage_source_dir
from breedops.jobs.source_bundle import SOURCE_BUNDLE_KEY, bundle_bytes, upload_training_source


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_bundle_is_reproducible_and_holds_exactly_the_staged_source(tmp_path: Path):
    first, second = bundle_bytes(), bundle_bytes()
    staged = stage_source_dir(tmp_path)

    assert first == second
    members = _members(first)
    assert [m.name for m in members] == sorted(
        p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert {ENTRY_SCRIPT, "requirements.txt", "breedops/training/train.py",
            "breedops/serving/inference.py"} <= {m.name for m in members}
    assert all((m.mtime, m.uid, m.gid, m.uname, m.mode) == (0, 0, 0, "", 0o644)
               for m in members)


def test_the_key_is_the_one_the_user_data_reads():
    module = Path(source_bundle.__file__).resolve().parents[3] / "terraform" / "modules"
    main_tf = (module / "training_instance" / "main.tf").read_text()

    assert f'"s3://${{var.training.bucket_name}}/{SOURCE_BUNDLE_KEY}"' in main_tf


@pytest.fixture
def s3(aws_credentials):
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bundle-bucket")
        client.put_bucket_versioning(Bucket="bundle-bucket",
                                     VersioningConfiguration={"Status": "Enabled"})
        yield client


def test_upload_returns_the_uri_and_skips_unchanged_source(s3):
    uri = upload_training_source(s3, "bundle-bucket")
    first = s3.head_object(Bucket="bundle-bucket", Key=SOURCE_BUNDLE_KEY)

    assert uri == f"s3://bundle-bucket/{SOURCE_BUNDLE_KEY}"
    assert upload_training_source(s3, "bundle-bucket") == uri
    second = s3.head_object(Bucket="bundle-bucket", Key=SOURCE_BUNDLE_KEY)
    assert second["VersionId"] == first["VersionId"] and second["ETag"] == first["ETag"]
    body = s3.get_object(Bucket="bundle-bucket", Key=SOURCE_BUNDLE_KEY)["Body"].read()
    assert body == bundle_bytes()


def test_changed_source_is_uploaded_again(s3, monkeypatch: pytest.MonkeyPatch):
    upload_training_source(s3, "bundle-bucket")
    first = s3.head_object(Bucket="bundle-bucket", Key=SOURCE_BUNDLE_KEY)
    monkeypatch.setattr(source_bundle, "bundle_bytes", lambda: b"other source")

    upload_training_source(s3, "bundle-bucket")

    second = s3.head_object(Bucket="bundle-bucket", Key=SOURCE_BUNDLE_KEY)
    assert second["VersionId"] != first["VersionId"]
    assert s3.get_object(Bucket="bundle-bucket",
                         Key=SOURCE_BUNDLE_KEY)["Body"].read() == b"other source"


def test_a_caller_that_may_not_read_the_object_uploads_it(s3, monkeypatch: pytest.MonkeyPatch):
    from botocore.exceptions import ClientError

    def forbidden(**_):
        raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    monkeypatch.setattr(s3, "head_object", forbidden)

    upload_training_source(s3, "bundle-bucket", key="code/other.tar.gz")

    assert s3.get_object(Bucket="bundle-bucket", Key="code/other.tar.gz")["Body"].read() == \
        bundle_bytes()
