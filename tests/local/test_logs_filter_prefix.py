"""CloudWatch Logs `FilterLogEvents` by stream-name prefix: one job's log, not its neighbours'."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.emulator


@pytest.fixture
def log_group(aws_emulator, unique_name: str) -> str:
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=unique_name)
    for stream, message in (("job-a/algo-1-1", "from a"), ("job-b/algo-1-1", "from b")):
        logs.create_log_stream(logGroupName=unique_name, logStreamName=stream)
        logs.put_log_events(logGroupName=unique_name, logStreamName=stream,
                            logEvents=[{"timestamp": int(time.time() * 1000),
                                        "message": message}])
    return unique_name


def test_filter_log_events_with_prefix_returns_only_matching_streams(log_group: str) -> None:
    events = boto3.client("logs").filter_log_events(
        logGroupName=log_group, logStreamNamePrefix="job-a/")["events"]
    assert [(e["logStreamName"], e["message"]) for e in events] == [("job-a/algo-1-1", "from a")]


def test_filter_log_events_with_prefix_matching_nothing_is_empty(log_group: str) -> None:
    assert boto3.client("logs").filter_log_events(
        logGroupName=log_group, logStreamNamePrefix="job-c/")["events"] == []


def test_filter_log_events_with_names_and_prefix_is_invalid(log_group: str) -> None:
    with pytest.raises(ClientError) as raised:
        boto3.client("logs").filter_log_events(
            logGroupName=log_group, logStreamNamePrefix="job-a/",
            logStreamNames=["job-b/algo-1-1"])
    assert raised.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "mutually exclusive" in raised.value.response["Error"]["Message"]


def test_filter_log_events_with_prefix_in_unknown_group_is_not_found(aws_emulator) -> None:
    with pytest.raises(ClientError) as raised:
        boto3.client("logs").filter_log_events(logGroupName="no-such-group",
                                               logStreamNamePrefix="x")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
