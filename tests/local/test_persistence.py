"""State created through real clients is there, with the same ids, after a restart."""

from __future__ import annotations

import io
import os
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from breedops.local import emulator
from breedops.local.services import free_port, start_service, stop_service

pytestmark = pytest.mark.emulator

LARGE_OBJECT_BYTES = 50 * 1024 * 1024


def snapshot() -> dict:
    """What Terraform's state would refer to, read back through the APIs."""
    s3, kms, ec2, lam = (boto3.client(n) for n in ("s3", "kms", "ec2", "lambda"))
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["app"]}])
    return {
        "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        "object": s3.get_object(Bucket="data", Key="notes/a.txt")["Body"].read(),
        "model_size": s3.head_object(Bucket="data", Key="jobs/j/output/model.tar.gz")[
            "ContentLength"
        ],
        "role_arn": boto3.client("iam").get_role(RoleName="fn-role")["Role"]["Arn"],
        "key_ids": sorted(k["KeyId"] for k in kms.list_keys()["Keys"]),
        "security_groups": sorted(g["GroupId"] for g in groups["SecurityGroups"]),
        "default_vpc": ec2.describe_vpcs()["Vpcs"][0]["VpcId"],
        "function_arn": lam.get_function(FunctionName="fn")["Configuration"]["FunctionArn"],
        "provisioned": lam.get_provisioned_concurrency_config(FunctionName="fn", Qualifier="live")[
            "RequestedProvisionedConcurrentExecutions"
        ],
    }


def create_resources(create_function) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="notes/a.txt", Body=b"kept")
    # As boto3 uploads a model.tar.gz: in parts (upload ids must survive the replay too).
    s3.upload_fileobj(
        io.BytesIO(os.urandom(LARGE_OBJECT_BYTES)), "data", "jobs/j/output/model.tar.gz",
        Config=TransferConfig(multipart_threshold=8 * 1024 * 1024),
    )
    create_function("fn")
    # A failed request changes nothing and must not shift the ids of what follows.
    with pytest.raises(ClientError):
        boto3.client("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")
    boto3.client("kms").create_key(Description="breedops")
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)
    lam = boto3.client("lambda")
    lam.create_alias(FunctionName="fn", Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(
        FunctionName="fn", Qualifier="live", ProvisionedConcurrentExecutions=2
    )


@pytest.mark.slow
def test_state_survives_restart_with_same_ids(
    tmp_path: Path, aws_emulator, make_function, use_emulator
):
    state = tmp_path / "state"
    service = emulator.emulator_service(port=free_port(), state=state)
    use_emulator(service)
    try:
        start_service(service, state)
        create_resources(make_function)
        before = snapshot()
        stop_service(service, state)

        start_service(service, state)
        after = snapshot()
        extra_key = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    finally:
        stop_service(service, state)

    assert after == before
    assert before["object"] == b"kept" and before["model_size"] == LARGE_OBJECT_BYTES
    assert len(before["key_ids"]) == 1 and len(before["security_groups"]) == 1
    assert extra_key not in before["key_ids"]  # new resources do not collide with replayed ones


def test_moto_reset_clears_the_journal(tmp_path: Path, aws_emulator, use_emulator):
    import urllib.request

    state = tmp_path / "state"
    service = emulator.emulator_service(port=free_port(), state=state)
    use_emulator(service)
    try:
        start_service(service, state)
        boto3.client("s3").create_bucket(Bucket="gone")
        request = urllib.request.Request(service.url + "/moto-api/reset", method="POST")
        urllib.request.urlopen(request).close()
        stop_service(service, state)
        start_service(service, state)
        buckets = boto3.client("s3").list_buckets()["Buckets"]
    finally:
        stop_service(service, state)

    assert buckets == []
