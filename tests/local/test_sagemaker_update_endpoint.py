"""SageMaker UpdateEndpoint added to the emulator (a new model rolls an endpoint over)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.emulator

ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"


def make_config(client, name: str, model: str, count: int) -> str:
    client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": count,
        "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
    return name


@pytest.fixture
def endpoint(aws_emulator, unique_name):
    """An endpoint on configuration `<name>-a` (1 instance), with `<name>-b` (2) ready."""
    client = boto3.client("sagemaker")
    client.create_model(ModelName=unique_name, ExecutionRoleArn=ROLE_ARN,
                        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/m.tar.gz"})
    make_config(client, f"{unique_name}-a", unique_name, 1)
    make_config(client, f"{unique_name}-b", unique_name, 2)
    client.create_endpoint(EndpointName=unique_name, EndpointConfigName=f"{unique_name}-a")
    return unique_name


def test_update_endpoint_switches_configuration_and_variants(endpoint):
    client = boto3.client("sagemaker")

    arn = client.update_endpoint(EndpointName=endpoint,
                                 EndpointConfigName=f"{endpoint}-b")["EndpointArn"]
    described = client.describe_endpoint(EndpointName=endpoint)

    assert arn == described["EndpointArn"]
    assert described["EndpointConfigName"] == f"{endpoint}-b"
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert "DataCaptureConfig" not in described  # AWS omits it when not configured


def test_update_endpoint_retains_variant_properties_when_asked(endpoint):
    client = boto3.client("sagemaker")

    client.update_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-b",
                           RetainAllVariantProperties=True)
    variant = client.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]

    assert variant["CurrentInstanceCount"] == 1  # kept, as autoscaling had set it


def test_update_endpoint_unknown_endpoint_is_validation_error(aws_emulator, unique_name):
    with pytest.raises(ClientError) as err:
        boto3.client("sagemaker").update_endpoint(EndpointName=unique_name,
                                                  EndpointConfigName="whatever")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert f"endpoint/{unique_name}" in err.value.response["Error"]["Message"]


def test_update_endpoint_unknown_configuration_is_validation_error(endpoint):
    client = boto3.client("sagemaker")
    with pytest.raises(ClientError) as err:
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName="missing-config")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "missing-config" in err.value.response["Error"]["Message"]
    # the endpoint is left as it was
    assert client.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == f"{endpoint}-a"


def test_describe_calls_omit_settings_never_made_and_keep_network_isolation(endpoint):
    client = boto3.client("sagemaker")
    name = f"{endpoint}-isolated"
    client.create_model(ModelName=name, ExecutionRoleArn=ROLE_ARN, EnableNetworkIsolation=True,
                        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/m.tar.gz"})

    model = client.describe_model(ModelName=name)
    config = client.describe_endpoint_config(EndpointConfigName=f"{endpoint}-a")

    assert model["EnableNetworkIsolation"] is True
    assert "VpcConfig" not in model
    assert "DataCaptureConfig" not in config
    plain = client.describe_model(ModelName=endpoint)
    assert plain["EnableNetworkIsolation"] is False
