"""Sync a prepared dataset to `s3://<bucket>/data/<dataset>/`: parallel, skipping unchanged."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from breedops.data.layout import scan_dataset

LOG = logging.getLogger(__name__)
DEFAULT_WORKERS = 8
# Below this a file is one PutObject: `upload_file` builds a transfer manager (a thread pool)
# per call, which for thousands of small images costs more than the uploads. Above it,
# `upload_file` sends parts (its default threshold is the same 8 MB).
SINGLE_PUT_BYTES = 8 * 1024 * 1024


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _remote_objects(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key -> (size, ETag without quotes) of what is already there."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return found


def _unchanged(path: Path, remote: tuple[int, str] | None) -> bool:
    if remote is None or remote[0] != path.stat().st_size:
        return False
    # A multipart ETag is not an MD5: equal size is the best cheap evidence then.
    return "-" in remote[1] or remote[1] == _md5(path)


def _s3_client(workers: int) -> Any:
    """An S3 client whose connection pool serves every upload thread."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(max_pool_connections=2 * workers))


def upload_dataset(dataset_dir: Path, bucket: str, dataset: str, s3: Any = None,
                   workers: int = DEFAULT_WORKERS) -> tuple[int, int]:
    """Upload the readable images; return (uploaded, skipped as unchanged)."""
    from tqdm import tqdm

    s3 = s3 or _s3_client(workers)
    splits = scan_dataset(dataset_dir)
    prefix = f"data/{dataset}/"
    remote = _remote_objects(s3, bucket, prefix)
    files = [(path, prefix + path.relative_to(dataset_dir).as_posix())
             for split in splits.values() for path, _ in split.samples]
    todo = [(path, key) for path, key in files if not _unchanged(path, remote.get(key))]
    with tqdm(total=len(todo), unit="file", desc=f"upload {dataset}") as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        def upload(item: tuple[Path, str]) -> None:
            path, key = item
            if path.stat().st_size < SINGLE_PUT_BYTES:
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            else:
                s3.upload_file(str(path), bucket, key)
            bar.update(1)
        list(pool.map(upload, todo))
    LOG.info("s3://%s/%s: uploaded %d file(s), %d unchanged", bucket, prefix, len(todo),
             len(files) - len(todo))
    return len(todo), len(files) - len(todo)


# Under data/ (the operator writes it, the execution role reads it), named by content so that
# a job's weights channel never holds two files and a new file never replaces an old job's.
WEIGHTS_PREFIX = "data/_weights"


def upload_weights(path: Path, bucket: str, s3: Any = None) -> str:
    """Upload a pretrained weights file, unless there; return its folder's S3 URI (a job's
    weights channel)."""
    import boto3
    from botocore.exceptions import ClientError

    s3 = s3 or boto3.client("s3")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    prefix = f"{WEIGHTS_PREFIX}/{digest}/"
    try:
        s3.head_object(Bucket=bucket, Key=prefix + path.name)
    except ClientError:
        s3.upload_file(str(path), bucket, prefix + path.name)
        LOG.info("uploaded the weights %s to s3://%s/%s", path, bucket, prefix)
    return f"s3://{bucket}/{prefix}"
