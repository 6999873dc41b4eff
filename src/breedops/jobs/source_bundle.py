"""The training source as one tarball in S3, for the EC2 training instance.

The instance's user data (terraform/modules/training_instance/templates/user_data.sh.tftpl)
downloads `s3://<bucket>/code/breedops.tar.gz`, extracts it and runs the entry point. The
tarball holds exactly what a SageMaker job gets as its source dir (`stage_source_dir`): the
entry script, `requirements.txt` and the breedops subset the entry point imports.

The archive is reproducible (sorted entries, fixed times, owners and modes, no gzip name or
time), so the same source gives the same bytes. The upload is skipped when the object already
holds those bytes, told by the SHA-256 kept in its metadata: an ETag is no content hash under
SSE-KMS (the bucket's default encryption), so it cannot tell.

`SOURCE_BUNDLE_KEY` is the Python side of the one shared key; the Terraform side is the
training_instance module's default `training.source_s3_uri` (`s3://<bucket>/code/breedops.tar.gz`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from breedops.jobs.sagemaker_backend import stage_source_dir

LOG = logging.getLogger(__name__)
# The key the instance's user data reads (the module's default source_s3_uri names it too).
SOURCE_BUNDLE_KEY = "code/breedops.tar.gz"
# The object metadata that records the archive's content hash (x-amz-meta-sha256).
SHA256_METADATA = "sha256"
FILE_MODE = 0o644
DIR_MODE = 0o755


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No build-machine detail in the archive: fixed time, owner and modes."""
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = DIR_MODE if info.isdir() else FILE_MODE
    return info


def bundle_bytes() -> bytes:
    """The reproducible tar.gz of the staged training source (paths relative to its root)."""
    with tempfile.TemporaryDirectory(prefix="breedops-bundle-") as staging:
        root = stage_source_dir(Path(staging))
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(root.rglob("*")):
                if path.is_dir() or path.suffix == ".pyc" or "__pycache__" in path.parts:
                    continue  # directories come implicitly; tar -x creates them
                tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False,
                        filter=_normalised)
    compressed = io.BytesIO()
    # mtime=0 and no file name: gzip's header then holds nothing that varies.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def _stored_sha256(s3_client: Any, bucket: str, key: str) -> str | None:
    """The content hash recorded on the object, or None when absent or not readable."""
    from botocore.exceptions import ClientError

    try:
        head = s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"):
            return None  # absent, or the caller may write but not read: upload
        raise
    return head.get("Metadata", {}).get(SHA256_METADATA)


def upload_training_source(s3_client: Any, bucket: str, key: str = SOURCE_BUNDLE_KEY) -> str:
    """Upload the training source tarball to `s3://<bucket>/<key>`; return that URI.

    Idempotent: unchanged source is not uploaded again (the object, and its ETag, stay).
    """
    data = bundle_bytes()
    digest = hashlib.sha256(data).hexdigest()
    uri = f"s3://{bucket}/{key}"
    if _stored_sha256(s3_client, bucket, key) == digest:
        LOG.info("%s is up to date (sha256 %s)", uri, digest[:12])
        return uri
    s3_client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/gzip",
                         Metadata={SHA256_METADATA: digest})
    LOG.info("uploaded the training source to %s (%d bytes, sha256 %s)", uri, len(data),
             digest[:12])
    return uri
