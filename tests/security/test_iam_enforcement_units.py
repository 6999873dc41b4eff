"""The enforcement extension's pieces, without a server: resource ARNs, conditions, decisions."""

from __future__ import annotations

import json
from types import SimpleNamespace

from breedops.local import iam_enforcement

ACCOUNT, REGION = "123456789012", "us-east-1"


def _response(body: dict | None = None, path: str = "/") -> SimpleNamespace:
    return SimpleNamespace(body=json.dumps(body or {}), path=path, region=REGION,
                           current_account=ACCOUNT)


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_sagemaker_resource_names_lowercased_arn_and_falls_back_to_star():
    arn = iam_enforcement.sagemaker_resource(_response({"EndpointName": "My-Endpoint",
                                                        "EndpointConfigName": "cfg"}))
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/my-endpoint"
    tuning = iam_enforcement.sagemaker_resource(_response({
        "HyperParameterTuningJobName": "T", "TrainingJobName": "x"}))
    assert tuning.endswith(":hyper-parameter-tuning-job/t")
    assert iam_enforcement.sagemaker_resource(_response({"MaxResults": 5})) == "*"


def test_lambda_resource_reads_the_path_or_the_body():
    from_path = iam_enforcement.lambda_resource(
        _response(path="/2015-03-31/functions/breedops-local-inference/aliases/live"))
    assert from_path == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:breedops-local-inference"
    created = iam_enforcement.lambda_resource(_response({"FunctionName": "f"},
                                                        path="/2015-03-31/functions"))
    assert created.endswith(":function:f")
    assert iam_enforcement.lambda_resource(_response(path="/2015-03-31/functions/")) == "*"


def test_logs_resource_names_the_stream_inside_its_group():
    stream = iam_enforcement.logs_resource(_response({"logGroupName": "/aws/lambda/f",
                                                      "logStreamName": "s"}))
    assert stream == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f:log-stream:s"
    assert iam_enforcement.logs_resource(_response({})) == "*"


def test_conditions_hold_only_when_every_key_matches():
    like = {"StringLike": {"s3:prefix": ["data/*", "jobs/*"]}}
    assert iam_enforcement.conditions_hold(like, {"s3:prefix": "data/x"})
    assert not iam_enforcement.conditions_hold(like, {"s3:prefix": "checkpoints/x"})
    assert not iam_enforcement.conditions_hold(like, {})  # a missing key fails the condition
    assert not iam_enforcement.conditions_hold({"NumericLessThan": {"k": "1"}}, {"k": "0"})


def test_request_context_reads_query_parameters():
    assert iam_enforcement.request_context({"prefix": ["data/"], "other": "N"}) == {
        "s3:prefix": "data/"}
    assert iam_enforcement.request_context({"prefix": "jobs/"}) == {"s3:prefix": "jobs/"}
    assert iam_enforcement.request_context({}) == {}


def test_is_allowed_scopes_by_resource_and_condition_and_honours_deny():
    invoke = {"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
              "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/mine"}
    listing = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
               "Condition": {"StringLike": {"s3:prefix": "data/*"}}}
    policies = [_policy(invoke, listing)]
    assert iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpoint", invoke["Resource"])
    assert not iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpoint",
                                          invoke["Resource"].replace("mine", "theirs"))
    assert iam_enforcement.is_allowed(policies, "s3:ListBucket", "arn:aws:s3:::b",
                                      {"s3:prefix": "data/"})
    assert not iam_enforcement.is_allowed(policies, "s3:ListBucket", "arn:aws:s3:::b")
    deny = _policy({"Effect": "Deny", "Action": "sagemaker:*", "Resource": "*"})
    assert not iam_enforcement.is_allowed([*policies, deny], "sagemaker:InvokeEndpoint",
                                          invoke["Resource"])


def test_enabled_reads_the_moto_variable(monkeypatch):
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3")
    assert iam_enforcement.enabled()
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    assert not iam_enforcement.enabled()
