"""Lambda provisioned concurrency added to the emulator, and moto's reserved concurrency."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.emulator

READY_FIELDS = {
    "RequestedProvisionedConcurrentExecutions", "AvailableProvisionedConcurrentExecutions",
    "AllocatedProvisionedConcurrentExecutions", "Status", "LastModified",
}


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"], response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_put_provisioned_concurrency_on_alias_is_ready(function_with_alias):
    client = boto3.client("lambda")

    put = client.put_provisioned_concurrency_config(
        FunctionName=function_with_alias, Qualifier="live", ProvisionedConcurrentExecutions=3
    )
    got = client.get_provisioned_concurrency_config(
        FunctionName=function_with_alias, Qualifier="live"
    )

    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    for body in (put, got):
        assert READY_FIELDS <= body.keys()
        assert body["Status"] == "READY"
        assert body["RequestedProvisionedConcurrentExecutions"] == 3
        assert body["AllocatedProvisionedConcurrentExecutions"] == 3


def test_list_provisioned_concurrency_configs_names_the_alias(function_with_alias):
    client = boto3.client("lambda")
    client.put_provisioned_concurrency_config(
        FunctionName=function_with_alias, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    client.put_provisioned_concurrency_config(
        FunctionName=function_with_alias, Qualifier="1", ProvisionedConcurrentExecutions=2
    )

    configs = client.list_provisioned_concurrency_configs(FunctionName=function_with_alias)[
        "ProvisionedConcurrencyConfigs"
    ]

    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_with_alias}"
    assert {(c["FunctionArn"], c["RequestedProvisionedConcurrentExecutions"]) for c in configs} == {
        (f"{arn}:live", 1), (f"{arn}:1", 2),
    }


def test_get_provisioned_concurrency_after_delete_raises_config_not_found(function_with_alias):
    client = boto3.client("lambda")
    client.put_provisioned_concurrency_config(
        FunctionName=function_with_alias, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    client.delete_provisioned_concurrency_config(FunctionName=function_with_alias, Qualifier="live")

    with pytest.raises(ClientError) as excinfo:
        client.get_provisioned_concurrency_config(
            FunctionName=function_with_alias, Qualifier="live"
        )

    assert error_of(excinfo) == (
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function", 404,
    )


def test_put_provisioned_concurrency_on_latest_raises_invalid_parameter(function_with_alias):
    with pytest.raises(ClientError) as excinfo:
        boto3.client("lambda").put_provisioned_concurrency_config(
            FunctionName=function_with_alias, Qualifier="$LATEST",
            ProvisionedConcurrentExecutions=1,
        )

    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
        400,
    )


def test_put_provisioned_concurrency_unknown_function_raises_not_found(aws_emulator, unique_name):
    with pytest.raises(ClientError) as excinfo:
        boto3.client("lambda").put_provisioned_concurrency_config(
            FunctionName=unique_name, Qualifier="live", ProvisionedConcurrentExecutions=1
        )

    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{unique_name}"


def test_put_provisioned_concurrency_unknown_alias_raises_not_found(function_with_alias):
    with pytest.raises(ClientError) as excinfo:
        boto3.client("lambda").put_provisioned_concurrency_config(
            FunctionName=function_with_alias, Qualifier="nope", ProvisionedConcurrentExecutions=1
        )

    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message.endswith(f"function:{function_with_alias}:nope")


def test_put_provisioned_concurrency_zero_raises_validation(function_with_alias):
    # Skip the client-side check so the request reaches the emulator, as a raw call would.
    client = boto3.client("lambda", config=Config(parameter_validation=False))

    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=function_with_alias, Qualifier="live", ProvisionedConcurrentExecutions=0
        )

    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert "greater than or equal to 1" in message


def test_put_provisioned_concurrency_above_reserved_raises_invalid_parameter(function_with_alias):
    client = boto3.client("lambda")
    client.put_function_concurrency(
        FunctionName=function_with_alias, ReservedConcurrentExecutions=2
    )

    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=function_with_alias, Qualifier="live", ProvisionedConcurrentExecutions=5
        )

    assert error_of(excinfo)[0] == "InvalidParameterValueException"
    assert client.get_function_concurrency(FunctionName=function_with_alias)[
        "ReservedConcurrentExecutions"
    ] == 2


def test_delete_function_drops_its_provisioned_concurrency(function_with_alias, make_function):
    client = boto3.client("lambda")
    client.put_provisioned_concurrency_config(
        FunctionName=function_with_alias, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    client.delete_function(FunctionName=function_with_alias)
    boto3.client("iam").delete_role(RoleName=f"{function_with_alias}-role")

    make_function(function_with_alias)  # the same name again: a new function, no configs
    configs = client.list_provisioned_concurrency_configs(FunctionName=function_with_alias)

    assert configs["ProvisionedConcurrencyConfigs"] == []
