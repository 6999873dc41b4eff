"""application-autoscaling tag APIs added to the emulator, through boto3."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.emulator

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def register_target(name: str, **extra: object) -> str:
    return boto3.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{name}/variant/AllTraffic",
        ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=2, **extra,
    )["ScalableTargetARN"]


def test_register_scalable_target_with_tags_lists_them(aws_emulator, unique_name):
    arn = register_target(unique_name, Tags={"project": "breedops", "env": "local"})

    client = boto3.client("application-autoscaling")
    assert arn.startswith("arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/")
    assert client.list_tags_for_resource(ResourceARN=arn)["Tags"] == {
        "project": "breedops", "env": "local",
    }
    described = client.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[f"endpoint/{unique_name}/variant/AllTraffic"]
    )["ScalableTargets"]
    assert described[0]["ScalableTargetARN"] == arn


def test_tag_and_untag_resource_change_tags(aws_emulator, unique_name):
    arn = register_target(unique_name)
    client = boto3.client("application-autoscaling")
    assert client.list_tags_for_resource(ResourceARN=arn)["Tags"] == {}

    client.tag_resource(ResourceARN=arn, Tags={"a": "1", "b": "2"})
    client.untag_resource(ResourceARN=arn, TagKeys=["a"])

    assert client.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"b": "2"}


def test_deregister_scalable_target_forgets_its_tags(aws_emulator, unique_name):
    arn = register_target(unique_name, Tags={"a": "1"})
    client = boto3.client("application-autoscaling")
    client.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{unique_name}/variant/AllTraffic",
        ScalableDimension=DIMENSION,
    )

    with pytest.raises(ClientError) as error:
        client.list_tags_for_resource(ResourceARN=arn)
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_list_tags_for_resource_unknown_arn_raises_not_found(aws_emulator, unique_name):
    arn = register_target(unique_name)
    unknown = arn[:-4] + "zzzz"

    with pytest.raises(ClientError) as error:
        boto3.client("application-autoscaling").list_tags_for_resource(ResourceARN=unknown)

    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert error.value.response["Error"]["Message"] == f"No scalable target found for ARN: {unknown}"


def test_list_tags_for_resource_malformed_arn_raises_validation(aws_emulator):
    with pytest.raises(ClientError) as error:
        boto3.client("application-autoscaling").list_tags_for_resource(
            ResourceARN="arn:aws:s3:::not-a-target"
        )

    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "resourceARN" in error.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"aws:owner": "me"}, "reserved prefix aws:"),
        ({"bad#key": "v"}, "Value 'bad#key' at 'tags'"),
        ({"k": "v" * 257}, "less than or equal to 256"),
    ],
)
def test_tag_resource_bad_tags_raise_validation(aws_emulator, unique_name, tags, message):
    arn = register_target(unique_name)
    client = boto3.client("application-autoscaling")

    with pytest.raises(ClientError) as error:
        client.tag_resource(ResourceARN=arn, Tags=tags)

    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert message in error.value.response["Error"]["Message"]
    assert client.list_tags_for_resource(ResourceARN=arn)["Tags"] == {}


def test_register_scalable_target_bad_tags_registers_nothing(aws_emulator, unique_name):
    with pytest.raises(ClientError) as error:
        register_target(unique_name, Tags={"aws:x": "y"})

    assert error.value.response["Error"]["Code"] == "ValidationException"
    targets = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[f"endpoint/{unique_name}/variant/AllTraffic"]
    )["ScalableTargets"]
    assert targets == []
