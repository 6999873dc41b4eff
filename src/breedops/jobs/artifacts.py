"""The training artifact into Terraform: `terraform/envs/<env>/artifacts.auto.tfvars.json`.

Written atomically (temp file + `os.replace`) and only after the model.tar.gz is confirmed in
S3, so Terraform never reads a half-written file or deploys a model that is not there.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError
from breedops.settings import artifacts_file

LOG = logging.getLogger(__name__)
ARTIFACT_KEYS = ("model_data_url", "training_job_name", "training_job_arn", "tuning_job_name",
                 "best_hyperparameters", "test_metrics")


class ArtifactError(BreedopsError):
    """The artifact cannot be recorded (model missing in S3, unreadable artifacts file)."""


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ArtifactError(f"not an s3://bucket/key URL: {url!r}")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def check_model_in_s3(model_data_url: str, s3_client: Any) -> None:
    """Raise unless the object exists (HEAD), naming the URL."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_url(model_data_url)
    try:
        s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        raise ArtifactError(
            f"model artifact {model_data_url} is not in S3 ({e.response['Error'].get('Code')}); "
            "not writing the artifacts file"
        ) from e


def read_artifact(env: str) -> dict[str, Any]:
    """The current `model_artifact` of an environment ({} when none)."""
    path = artifacts_file(env)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text()).get("model_artifact") or {}
    except (json.JSONDecodeError, AttributeError) as e:
        raise ArtifactError(f"{path} is not valid JSON of the form "
                            '{"model_artifact": {...}}: fix or delete it') from e


def write_artifact(env: str, s3_client: Any, **fields: Any) -> Path:
    """Check the model in S3, merge `fields` into the env's artifact, and replace the file."""
    unknown = sorted(set(fields) - set(ARTIFACT_KEYS))
    if unknown:
        raise ValueError(f"unknown artifact fields: {unknown}")
    merged = {**read_artifact(env), **{k: v for k, v in fields.items() if v is not None}}
    for required in ("model_data_url", "training_job_name", "training_job_arn"):
        if not merged.get(required):
            raise ArtifactError(f"the artifact lacks {required}")
    check_model_in_s3(merged["model_data_url"], s3_client)
    if "best_hyperparameters" in merged:  # Terraform's map(string)
        merged["best_hyperparameters"] = {k: str(v) for k, v in
                                          merged["best_hyperparameters"].items()}
    path = artifacts_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".artifacts.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"model_artifact": merged}, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    LOG.info("recorded %s in %s", merged["model_data_url"], path)
    return path


def fetch_job_outputs(model_data_url: str, s3_client: Any, target: Path) -> list[Path]:
    """Extract the plots and metrics of a job's output.tar.gz (beside its model) into `target`.

    SageMaker keeps a job's `output/data` only in S3, so this is how its figures reach the
    user in both environments. Only plain files with safe names are extracted.
    """
    import io
    import tarfile

    bucket, key = split_s3_url(model_data_url)
    body = s3_client.get_object(Bucket=bucket, Key=key.replace("model.tar.gz", "output.tar.gz"))
    target.mkdir(parents=True, exist_ok=True)
    extracted = []
    with tarfile.open(fileobj=io.BytesIO(body["Body"].read()), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.endswith((".png", ".json")) and not name.startswith("."):
                source = tar.extractfile(member)
                if source is not None:
                    (target / name).write_bytes(source.read())
                    extracted.append(target / name)
    return sorted(extracted)
