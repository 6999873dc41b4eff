"""What SageMaker moves between S3 and a host: channels, checkpoints and the job's outputs.

Every transfer is made as the job's role, so a role that may not read a channel or write the
output path fails the job as it would on AWS. Listings, checkpoints and outputs go through an
S3 client signed with the role's credentials; a channel's objects (often thousands of small
images) are read by a `Fetch` function, which the emulator serves from its own store after
the same authorisation (one request per object would cost more than the training).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
TRANSFER_WORKERS = 8
# A model is float weights and wheels (zips): deflate at level 1-9 shrinks them ~7% for ~15x
# the CPU of storing them (45 MB model.pth: 1.5-1.8 CPU-s vs 0.1), and the job competes with
# other jobs for the cores. Level 0 still writes the gzip stream SageMaker expects.
PACK_COMPRESS_LEVEL = 0
# Uploads (a 100+ MB checkpoint every epoch) in 16 MB parts, two at a time: the emulator serves
# one request at a time, and each part costs a request's IAM check and journal entry.
UPLOAD_PART_BYTES = 16 * 1024 * 1024
UPLOAD_CONCURRENCY = 2
Fetch = Callable[[str, str], bytes]  # (bucket, key) -> the object's bytes


class ChannelError(Exception):
    """A channel cannot be downloaded: its prefix is empty or unreadable (a ClientError)."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def list_keys(s3: Any, uri: str) -> list[str]:
    bucket, prefix = split_s3_uri(uri)
    return sorted(obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", []))


def shard(keys: list[str], host_index: int, host_count: int) -> list[str]:
    """`ShardedByS3Key`: each host gets every N-th object of the sorted keys."""
    return keys[host_index::host_count]


def channel_downloads(s3: Any, channel: dict[str, Any], target: Path, host_index: int,
                      host_count: int) -> list[tuple[str, str, Path]]:
    """(bucket, key, local path) of one channel on one host, sharded when the request says so."""
    source = channel["DataSource"]["S3DataSource"]
    uri = source["S3Uri"]
    bucket, prefix = split_s3_uri(uri)
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise ChannelError(f"channel {channel['ChannelName']}: only S3DataType S3Prefix is "
                           "supported by the emulator")
    keys = [k for k in list_keys(s3, uri) if not k.endswith("/")]
    if not keys:
        raise ChannelError(f"No S3 objects found under S3 URL \"{uri}\" given in input data "
                           f"source. Please ensure that the bucket exists in the selected "
                           f"region, that objects exist under that S3 prefix, and that the role "
                           f"has permission to read them (channel {channel['ChannelName']}).")
    if source.get("S3DataDistributionType") == "ShardedByS3Key":
        keys = shard(keys, host_index, host_count)
    # As on SageMaker: a prefix that names one object lands as that object's file name.
    base = prefix if prefix.endswith("/") or len(keys) > 1 else prefix.rsplit("/", 1)[0] + "/"
    return [(bucket, key, target / key[len(base):].lstrip("/")) for key in keys]


def client_fetch(s3: Any) -> Fetch:
    """Objects through an S3 client: one GetObject each."""
    def fetch(bucket: str, key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    return fetch


def download_all(fetch: Fetch, downloads: Iterable[tuple[str, str, Path]]) -> int:
    """Write each (bucket, key, path) to its path; the number of objects."""
    items = list(downloads)

    def download(item: tuple[str, str, Path]) -> None:
        bucket, key, path = item
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fetch(bucket, key))

    with ThreadPoolExecutor(max_workers=TRANSFER_WORKERS) as pool:
        list(pool.map(download, items))
    return len(items)


def restore_checkpoints(s3: Any, uri: str, local: Path) -> int:
    """Download what an earlier run left under the checkpoint URI (a resumed or spot job)."""
    bucket, prefix = split_s3_uri(uri if uri.endswith("/") else uri + "/")
    downloads = [(bucket, key, local / key[len(prefix):])
                 for key in list_keys(s3, f"s3://{bucket}/{prefix}") if not key.endswith("/")]
    return download_all(client_fetch(s3), downloads)


class CheckpointSync:
    """Upload the files of the checkpoint folder that changed since the last sync."""

    def __init__(self, s3: Any, uri: str, local: Path) -> None:
        self.s3 = s3
        self.bucket, prefix = split_s3_uri(uri if uri.endswith("/") else uri + "/")
        self.prefix = prefix
        self.local = local
        self._seen: dict[Path, tuple[float, int]] = {}

    def sync(self) -> int:
        uploaded = 0
        for path in sorted(self.local.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue  # dot files: a writer's temporary file before its atomic rename
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            signature = (stat.st_mtime, stat.st_size)
            if self._seen.get(path) == signature:
                continue
            key = self.prefix + path.relative_to(self.local).as_posix()
            upload(self.s3, path, self.bucket, key)
            self._seen[path] = signature
            uploaded += 1
        return uploaded


def upload(s3: Any, path: Path, bucket: str, key: str) -> None:
    """One file to S3, in parts above `UPLOAD_PART_BYTES`."""
    from boto3.s3.transfer import TransferConfig

    s3.upload_file(str(path), bucket, key, Config=TransferConfig(
        multipart_threshold=UPLOAD_PART_BYTES, multipart_chunksize=UPLOAD_PART_BYTES,
        max_concurrency=UPLOAD_CONCURRENCY))


def pack(source: Path, archive: Path) -> Path:
    """A gzipped tar of a folder's content, with paths relative to it (SageMaker's layout)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", compresslevel=PACK_COMPRESS_LEVEL) as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return archive


def upload_outputs(s3: Any, host_base: Path, output_uri: str) -> str:
    """Pack model/ and output/data/ into `<output>/{model,output}.tar.gz`; the model's URI.

    The model goes last: its presence says the job's outputs are complete.
    """
    bucket, prefix = split_s3_uri(output_uri.rstrip("/") + "/")
    staging = host_base / ".upload"
    output_archive = pack(host_base / "output" / "data", staging / "output.tar.gz")
    model_archive = pack(host_base / "model", staging / "model.tar.gz")
    upload(s3, output_archive, bucket, prefix + "output.tar.gz")
    upload(s3, model_archive, bucket, prefix + "model.tar.gz")
    shutil.rmtree(staging, ignore_errors=True)
    return f"s3://{bucket}/{prefix}model.tar.gz"
