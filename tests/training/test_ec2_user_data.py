"""The EC2 training path: the instance's user data, as Terraform renders it, run as the instance.

A throw-away Terraform root in a sandbox applies the repository's own `data_bucket` and `iam`
modules (the training instance role and its policy, exactly as deployed) and renders the user
data through the `training_instance` module itself (its `user_data` output, `create = false`:
moto has no Deep Learning AMI). The pipeline's functions upload the digits dataset and the
training source. Then bash runs the rendered script with the credentials EC2 would give the
instance: the instance profile's role, assumed by `ec2.amazonaws.com` through the emulator's
service route. Two things are stubbed, both by the means the module offers: the AMI's Python
environment (`training.python_activate` puts this venv on PATH) and `shutdown` (a PATH entry
that records its call). The base folder (/opt/ml) and log file are redirected by the two
variables the script reads for tests.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from ec2_instance import HYPERPARAMETERS, PROVIDER_TF, PYTHON_ACTIVATE, run_user_data
from sandbox import make_sandbox

from breedops.settings import DEFAULT_REGION

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

JOB = "ec2-train-001"
JOB_WITHOUT_DATA = "ec2-train-nodata"
DATASET = "digits"
# The sandbox root: the repository's modules, composed as the platform module composes them.
ROOT_MAIN_TF = PROVIDER_TF + """
variable "name_prefix" {
  type = string
}

variable "jobs" {
  type = map(object({
    job_name        = string
    dataset         = string
    hyperparameters = map(string)
    python_activate = string
  }))
}

module "data_bucket" {
  source = "../../modules/data_bucket"

  name_prefix             = var.name_prefix
  force_destroy           = true
  deny_insecure_transport = false
}

module "iam" {
  source = "../../modules/iam"

  name_prefix                      = var.name_prefix
  bucket_arn                       = module.data_bucket.bucket_arn
  kms_key_arn                      = module.data_bucket.kms_key_arn
  endpoint_name                    = "${var.name_prefix}-endpoint"
  lambda_function_name             = "${var.name_prefix}-inference"
  lambda_alias                     = "live"
  prefixes                         = module.data_bucket.prefixes
  create_training_instance_profile = true
}

module "training_instance" {
  source   = "../../modules/training_instance"
  for_each = var.jobs

  create                = false
  name_prefix           = var.name_prefix
  instance_profile_name = module.iam.training_instance_profile_name
  training              = merge(each.value, { bucket_name = module.data_bucket.bucket_name })
}

output "bucket_name" {
  value = module.data_bucket.bucket_name
}

output "instance_profile_name" {
  value = module.iam.training_instance_profile_name
}

output "user_data" {
  value = { for name, job in module.training_instance : name => job.user_data }
}

output "model_output_uri" {
  value = { for name, job in module.training_instance : name => job.model_output_uri }
}
"""


@dataclass
class Ec2Training:
    """The applied sandbox: the bucket, the rendered user data per job, the instance role."""

    bucket: str
    user_data: dict[str, str]
    model_output_uri: dict[str, str]
    role_arn: str
    role_credentials: dict[str, str]
    source_uri: str


@pytest.fixture(scope="module")
def ec2_training(aws_emulator, tiny_digits_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Training]:
    from breedops.data.upload import upload_dataset
    from breedops.jobs.source_bundle import upload_training_source
    from breedops.local.service_roles import EC2_PRINCIPAL, assume_over_http
    from breedops.terraform.runner import run, run_json

    sandbox = make_sandbox(tmp_path_factory.mktemp("ec2-sandbox"))
    root = sandbox / "terraform" / "envs" / "ec2-user-data"
    root.mkdir()
    (root / "main.tf").write_text(ROOT_MAIN_TF % {"region": DEFAULT_REGION})
    job = {"dataset": DATASET, "hyperparameters": HYPERPARAMETERS,
           "python_activate": PYTHON_ACTIVATE}
    (root / "terraform.tfvars.json").write_text(json.dumps({
        "name_prefix": f"ec2u{uuid.uuid4().hex[:8]}",
        "jobs": {"train": {**job, "job_name": JOB},
                 "without_data": {**job, "job_name": JOB_WITHOUT_DATA,
                                  "dataset": "no-such-dataset"}},
    }))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BREEDOPS_ROOT", str(sandbox))
        mp.setenv("BREEDOPS_STATE_DIR", str(sandbox / ".local"))
        run(root, "init", "-input=false", "-no-color", capture=True)
        run(root, "apply", "-input=false", "-no-color", "-auto-approve", capture=True)
        outputs = {k: v["value"] for k, v in run_json(root, "output", "-json").items()}

    bucket = outputs["bucket_name"]
    s3 = boto3.client("s3")
    upload_dataset(tiny_digits_dir, bucket, DATASET, s3=s3, workers=4)
    source_uri = upload_training_source(s3, bucket)
    # As EC2 does: the instance profile's role, assumed by the EC2 service for the instance.
    profile = boto3.client("iam").get_instance_profile(
        InstanceProfileName=outputs["instance_profile_name"])["InstanceProfile"]
    role_arn = profile["Roles"][0]["Arn"]
    credentials = assume_over_http(role_arn, EC2_PRINCIPAL, "i-0123456789abcdef0")
    yield Ec2Training(bucket=bucket, user_data=outputs["user_data"],
                      model_output_uri=outputs["model_output_uri"], role_arn=role_arn,
                      role_credentials=credentials, source_uri=source_uri)


def _keys(bucket: str, prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_user_data_is_rendered_by_the_module(ec2_training: Ec2Training):
    script = ec2_training.user_data["train"]

    assert script.startswith("#!/bin/bash\n")
    assert f"JOB_NAME='{JOB}'" in script and f"BUCKET='{ec2_training.bucket}'" in script
    assert f"SOURCE_S3_URI='{ec2_training.source_uri}'" in script
    assert script.splitlines().count(PYTHON_ACTIVATE) == 1
    assert ec2_training.model_output_uri["train"] == (
        f"s3://{ec2_training.bucket}/jobs/{JOB}/output/model.tar.gz")


def test_user_data_trains_uploads_the_model_and_shuts_down(ec2_training: Ec2Training,
                                                           tmp_path: Path):
    result = run_user_data(ec2_training.user_data["train"], ec2_training.role_credentials,
                           tmp_path)

    assert result.returncode == 0, result.output[-4000:]
    assert result.shutdown_calls == ["-h now"], result.output[-2000:]
    assert "valid_loss=" in result.output  # the entry point's per-epoch metrics line
    body = boto3.client("s3").get_object(Bucket=ec2_training.bucket,
                                         Key=f"jobs/{JOB}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
        labels = json.loads(tar.extractfile("labels.json").read())
    # SageMaker's layout: paths relative to the model dir, no "./" prefix.
    assert {"model.pth", "labels.json", "code/inference.py"} <= set(names)
    assert not [n for n in names if n.startswith(("./", "/"))]
    assert labels == [str(digit) for digit in range(10)]
    assert f"jobs/{JOB}/output/output.tar.gz" in _keys(ec2_training.bucket, f"jobs/{JOB}/")
    assert f"checkpoints/{JOB}/{JOB}/checkpoint.pt" in _keys(ec2_training.bucket,
                                                               f"checkpoints/{JOB}/")


def test_user_data_without_data_fails_uploads_no_model_and_still_shuts_down(
        ec2_training: Ec2Training, tmp_path: Path):
    result = run_user_data(ec2_training.user_data["without_data"],
                           ec2_training.role_credentials, tmp_path)

    assert result.returncode != 0
    assert result.shutdown_calls == ["-h now"], result.output[-2000:]
    assert "no train data under" in result.output
    keys = _keys(ec2_training.bucket, f"jobs/{JOB_WITHOUT_DATA}/")
    assert keys == [f"jobs/{JOB_WITHOUT_DATA}/output/failure"]
    failure = boto3.client("s3").get_object(Bucket=ec2_training.bucket, Key=keys[0])
    assert "no train data under" in failure["Body"].read().decode()


def test_instance_role_reads_source_and_data_but_writes_only_outputs(ec2_training: Ec2Training):
    c = ec2_training.role_credentials
    s3 = boto3.Session(aws_access_key_id=c["AccessKeyId"],
                       aws_secret_access_key=c["SecretAccessKey"],
                       aws_session_token=c["SessionToken"],
                       region_name=DEFAULT_REGION).client("s3")
    bucket = ec2_training.bucket

    s3.head_object(Bucket=bucket, Key="code/breedops.tar.gz")
    s3.list_objects_v2(Bucket=bucket, Prefix=f"data/{DATASET}/train/", MaxKeys=1)
    for denied in (lambda: s3.put_object(Bucket=bucket, Key="code/breedops.tar.gz", Body=b"x"),
                   lambda: s3.put_object(Bucket=bucket, Key=f"data/{DATASET}/x.png", Body=b"x"),
                   lambda: s3.list_objects_v2(Bucket=bucket, Prefix="")):
        with pytest.raises(ClientError) as raised:
            denied()
        assert raised.value.response["Error"]["Code"] == "AccessDenied"


def test_source_upload_is_idempotent(ec2_training: Ec2Training):
    from breedops.jobs.source_bundle import SOURCE_BUNDLE_KEY, upload_training_source

    s3 = boto3.client("s3")
    before = s3.head_object(Bucket=ec2_training.bucket, Key=SOURCE_BUNDLE_KEY)

    assert upload_training_source(s3, ec2_training.bucket) == ec2_training.source_uri
    after = s3.head_object(Bucket=ec2_training.bucket, Key=SOURCE_BUNDLE_KEY)
    assert (after["ETag"], after.get("VersionId")) == (before["ETag"], before.get("VersionId"))
