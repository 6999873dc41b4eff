"""Least privilege proven both ways, against the emulator with IAM enforcement on.

Each role's real pipeline calls succeed with its own (assumed) credentials; a deny matrix of
calls each role must not make is refused. SageMaker, Lambda, CloudWatch Logs and KMS calls are
checked against their resource ARNs by `breedops.local.iam_enforcement`. SageMaker Runtime's
`InvokeEndpoint` and `iam:PassRole` are not requests the emulator authorizes (local hosting
serves the first, the second is implied by CreateTrainingJob), so those rows evaluate the
role's attached policies with `iam_enforcement.is_allowed`, the emulator's own evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from breedops.local import iam_enforcement

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

ACCOUNT = "123456789012"
REGION = "us-east-1"
PREFIX = "breedops-local"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{PREFIX}-endpoint"
OTHER_ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/someone-elses-endpoint"
EXECUTION_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-sagemaker-execution"
LAMBDA_LOG_GROUP = f"/aws/lambda/{PREFIX}-inference"
SAGEMAKER_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
DENIED_CODES = {"AccessDenied", "AccessDeniedException"}


def _training_job(name: str, bucket: str) -> dict:
    return {
        "TrainingJobName": name, "RoleArn": EXECUTION_ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": "pytorch-training:2", "TrainingInputMode":
                                   "File"},
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/jobs/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                           "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def _allowed_calls(env) -> dict[str, list[tuple[str, Callable[[], object]]]]:
    bucket, key = env.outputs["bucket_name"], env.outputs["kms_key_arn"]
    op, sm, fn = (env.roles[n] for n in ("operator", "sagemaker", "lambda"))
    op_s3, sm_s3 = op.client("s3"), sm.client("s3")
    sm_logs, fn_logs = sm.client("logs"), fn.client("logs")
    return {
        "operator": [
            ("upload data", lambda: op_s3.put_object(Bucket=bucket, Key="data/d/train/0/a.png",
                                                     Body=b"png")),
            ("read data", lambda: op_s3.get_object(Bucket=bucket, Key="data/d/train/0/a.png")),
            ("list data", lambda: op_s3.list_objects_v2(Bucket=bucket, Prefix="data/")),
            ("read artifact", lambda: op_s3.get_object(
                Bucket=bucket, Key="jobs/train-001/output/model.tar.gz")),
            ("submit training job", lambda: op.client("sagemaker").create_training_job(
                **_training_job(f"{PREFIX}-train-002", bucket))),
            ("describe training job", lambda: op.client("sagemaker").describe_training_job(
                TrainingJobName=f"{PREFIX}-train-002")),
            ("use bucket key", lambda: op.client("kms").generate_data_key(
                KeyId=key, KeySpec="AES_256")),
        ],
        "sagemaker": [
            ("read data", lambda: sm_s3.get_object(Bucket=bucket, Key="data/d/train/0/a.png")),
            ("list data", lambda: sm_s3.list_objects_v2(Bucket=bucket, Prefix="data/")),
            ("write artifact", lambda: sm_s3.put_object(
                Bucket=bucket, Key="jobs/train-002/output/model.tar.gz", Body=b"m")),
            ("write checkpoint", lambda: sm_s3.put_object(
                Bucket=bucket, Key="checkpoints/train-002/c.pt", Body=b"c")),
            ("read artifact", lambda: sm_s3.get_object(
                Bucket=bucket, Key="jobs/train-001/output/model.tar.gz")),
            ("create log group", lambda: sm_logs.create_log_group(
                logGroupName=SAGEMAKER_LOG_GROUP)),
            ("create log stream", lambda: sm_logs.create_log_stream(
                logGroupName=SAGEMAKER_LOG_GROUP, logStreamName="train-002/algo-1")),
            ("put log events", lambda: sm_logs.put_log_events(
                logGroupName=SAGEMAKER_LOG_GROUP, logStreamName="train-002/algo-1",
                logEvents=[{"timestamp": 1, "message": "epoch=1;"}])),
            ("put metrics", lambda: sm.client("cloudwatch").put_metric_data(
                Namespace="/aws/sagemaker/TrainingJobs",
                MetricData=[{"MetricName": "valid_loss", "Value": 0.1}])),
            ("decrypt with bucket key", lambda: sm.client("kms").describe_key(KeyId=key)),
        ],
        "lambda": [
            ("create log stream", lambda: fn_logs.create_log_stream(
                logGroupName=LAMBDA_LOG_GROUP, logStreamName="2026/01/01/[1]abc")),
            ("put log events", lambda: fn_logs.put_log_events(
                logGroupName=LAMBDA_LOG_GROUP, logStreamName="2026/01/01/[1]abc",
                logEvents=[{"timestamp": 1, "message": "hello"}])),
        ],
    }


def _denied_calls(env) -> list[tuple[str, str, Callable[[], object]]]:
    bucket, key = env.outputs["bucket_name"], env.outputs["kms_key_arn"]
    op, sm, fn = (env.roles[n] for n in ("operator", "sagemaker", "lambda"))
    op_s3, sm_s3, fn_s3 = op.client("s3"), sm.client("s3"), fn.client("s3")
    other_key = env.admin.client("kms").create_key()["KeyMetadata"]["Arn"]
    env.admin.client("s3").create_bucket(Bucket="another-teams-bucket")
    env.admin.client("s3").put_object(Bucket="another-teams-bucket", Key="data/x", Body=b"x")
    endpoint = {"EndpointName": f"{PREFIX}-endpoint"}
    new_endpoint = {"EndpointName": f"{PREFIX}-rogue", "EndpointConfigName": f"{PREFIX}-rogue"}
    return [
        ("operator", "read another bucket", lambda: op_s3.get_object(
            Bucket="another-teams-bucket", Key="data/x")),
        ("operator", "overwrite an artifact", lambda: op_s3.put_object(
            Bucket=bucket, Key="jobs/train-001/output/model.tar.gz", Body=b"evil")),
        ("operator", "write a checkpoint", lambda: op_s3.put_object(
            Bucket=bucket, Key="checkpoints/x/c.pt", Body=b"c")),
        ("operator", "list the whole bucket", lambda: op_s3.list_objects_v2(Bucket=bucket)),
        ("operator", "list checkpoints", lambda: op_s3.list_objects_v2(
            Bucket=bucket, Prefix="checkpoints/")),
        ("operator", "delete data", lambda: op_s3.delete_object(
            Bucket=bucket, Key="data/d/train/0/a.png")),
        ("operator", "delete the bucket", lambda: op_s3.delete_bucket(Bucket=bucket)),
        ("operator", "replace the bucket policy", lambda: op_s3.put_bucket_policy(
            Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": []}))),
        ("operator", "submit a job outside the project prefix", lambda: op.client(
            "sagemaker").create_training_job(**_training_job("other-train", bucket))),
        ("operator", "describe another team's model", lambda: op.client(
            "sagemaker").describe_model(ModelName="other-model")),
        ("operator", "create an endpoint", lambda: op.client("sagemaker").create_endpoint(
            **new_endpoint)),
        ("operator", "delete the endpoint", lambda: op.client("sagemaker").delete_endpoint(
            **endpoint)),
        ("operator", "read the key policy", lambda: op.client("kms").get_key_policy(
            KeyId=key, PolicyName="default")),
        ("operator", "schedule key deletion", lambda: op.client("kms").schedule_key_deletion(
            KeyId=key)),
        ("operator", "create an IAM user", lambda: op.client("iam").create_user(
            UserName="backdoor")),
        ("operator", "delete the function", lambda: op.client("lambda").delete_function(
            FunctionName=f"{PREFIX}-inference")),
        ("sagemaker", "write into data", lambda: sm_s3.put_object(
            Bucket=bucket, Key="data/d/train/0/b.png", Body=b"x")),
        ("sagemaker", "read another bucket", lambda: sm_s3.get_object(
            Bucket="another-teams-bucket", Key="data/x")),
        ("sagemaker", "delete an artifact", lambda: sm_s3.delete_object(
            Bucket=bucket, Key="jobs/train-001/output/model.tar.gz")),
        ("sagemaker", "create a log group outside /aws/sagemaker", lambda: sm.client(
            "logs").create_log_group(logGroupName="/aws/lambda/other")),
        ("sagemaker", "read the key policy", lambda: sm.client("kms").get_key_policy(
            KeyId=key, PolicyName="default")),
        ("sagemaker", "use another key", lambda: sm.client("kms").describe_key(
            KeyId=other_key)),
        ("sagemaker", "put metrics in another namespace", lambda: sm.client(
            "cloudwatch").put_metric_data(Namespace="Other",
                                         MetricData=[{"MetricName": "m", "Value": 1.0}])),
        ("sagemaker", "create an endpoint", lambda: sm.client("sagemaker").create_endpoint(
            **new_endpoint)),
        ("lambda", "create an endpoint", lambda: fn.client("sagemaker").create_endpoint(
            **new_endpoint)),
        ("lambda", "delete the endpoint", lambda: fn.client("sagemaker").delete_endpoint(
            **endpoint)),
        ("lambda", "read data", lambda: fn_s3.get_object(
            Bucket=bucket, Key="data/d/train/0/a.png")),
        ("lambda", "write another function's logs", lambda: fn.client("logs").create_log_stream(
            logGroupName="/aws/lambda/other", logStreamName="s")),
        ("lambda", "change its own function", lambda: fn.client(
            "lambda").update_function_configuration(FunctionName=f"{PREFIX}-inference",
                                                    Timeout=900)),
        ("lambda", "decrypt with the bucket key", lambda: fn.client("kms").describe_key(
            KeyId=key)),
    ]


def _is_access_denied(error: ClientError) -> bool:
    # JSON-protocol services get moto's XML denial, which botocore reports as a bare 403.
    return (error.response["Error"]["Code"] in DENIED_CODES
            or "<Code>AccessDenied</Code>" in error.response["Error"].get("Message", ""))


def test_roles_make_their_pipeline_calls(enforced):
    for role, calls in _allowed_calls(enforced).items():
        for name, call in calls:
            try:
                call()
            except ClientError as e:
                # Authorised, then refused as a duplicate (the submitted job's own log group).
                if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                    pytest.fail(f"{role} could not {name}: {e}")


def test_roles_are_denied_the_deny_matrix(enforced):
    matrix = _denied_calls(enforced)
    assert len(matrix) >= 25
    allowed = []
    for role, name, call in matrix:
        try:
            call()
            allowed.append(f"{role}: {name}")
        except ClientError as e:
            if not _is_access_denied(e):
                allowed.append(f"{role}: {name} failed with {e}, not an access denial")
    assert allowed == [], "\n".join(allowed)


def test_lambda_invokes_only_its_own_endpoint(enforced):
    policies = enforced.policies["lambda"]
    assert iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpoint", ENDPOINT_ARN)
    assert not iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpoint",
                                          OTHER_ENDPOINT_ARN)
    assert not iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpointAsync",
                                          ENDPOINT_ARN)


def test_operator_passes_only_the_execution_role_to_sagemaker(enforced):
    policies = enforced.policies["operator"]
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    assert iam_enforcement.is_allowed(policies, "iam:PassRole", EXECUTION_ROLE_ARN, to_sagemaker)
    other_role = f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-inference-lambda"
    assert not iam_enforcement.is_allowed(policies, "iam:PassRole", other_role, to_sagemaker)
    assert not iam_enforcement.is_allowed(policies, "iam:PassRole", EXECUTION_ROLE_ARN,
                                          {"iam:PassedToService": "ec2.amazonaws.com"})


def test_unsigned_key_is_rejected_once_enforcement_is_on(enforced):
    import boto3

    stranger = boto3.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                             aws_secret_access_key="x", region_name=REGION)
    with pytest.raises(ClientError, match="InvalidClientTokenId|not valid|security token"):
        stranger.client("iam").list_users()
