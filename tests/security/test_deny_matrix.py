"""The deny matrix: calls each principal must never make, refused in the real run's account.

Every row is made through a real client signed with that principal's own credentials: the
operator role assumed by the admin (as the pipeline assumes it), the SageMaker execution,
Lambda and EC2 instance roles as their service assumes them for a source in the account
(`assume_over_http`). Each must fail with AccessDenied (AccessDeniedException for JSON
services), and the denial must be for the row's action: where the error message names it
(every service but S3, whose "Access Denied" from moto names nothing) the message says so, and
in every case the emulator's audit holds that call's decision: that principal, that action,
denied. The trust policies, unsigned requests and unknown keys have their own rows.

The run is the package's `applied_pipeline` (conftest.py): the rows aim at the bucket, key,
roles, jobs, endpoint and function the pipeline deployed; the admin adds only another team's
bucket and key to reach for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from breedops.local import iam_enforcement
from breedops.local.implied_actions import read_audit
from breedops.settings import DEFAULT_REGION

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

DENIED_CODES = {"AccessDenied", "AccessDeniedException"}
OTHER_BUCKET = "another-teams-bucket"
OTHER_ACCOUNT = "999999999999"
ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"


@dataclass
class World:
    """What the rows act on: the run's resources and each principal's clients."""

    principals: dict[str, Any]
    outputs: dict[str, Any]
    account: str
    roles: dict[str, str]
    data_key: str  # an object of the uploaded dataset
    artifact_key: str  # a trial's model.tar.gz under jobs/
    checkpoint_key: str
    ciphertext: bytes  # encrypted under the bucket key by the admin
    other_key: str  # another team's key

    def client(self, principal: str, service: str) -> Any:
        return self.principals[principal].client(service)

    @property
    def bucket(self) -> str:
        return self.outputs["bucket_name"]

    @property
    def key(self) -> str:
        return self.outputs["kms_key_arn"]

    @property
    def prefix(self) -> str:
        return self.outputs["name_prefix"]

    @property
    def function(self) -> str:
        return self.outputs["lambda_function_name"]

    @property
    def endpoint(self) -> str:
        return self.outputs["endpoint_name"]

    def training_job(self, name: str, role: str = "sagemaker") -> dict[str, Any]:
        return {
            "TrainingJobName": name, "RoleArn": self.roles[role],
            "AlgorithmSpecification": {"TrainingImage": "pytorch-training:2",
                                       "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": f"s3://{self.bucket}/jobs/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                               "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        }


@pytest.fixture(scope="package")
def world(applied_pipeline, principals) -> World:
    """The run's resources the rows aim at, found as the admin; another team's bucket."""
    s3, kms = applied_pipeline.admin("s3"), applied_pipeline.admin("kms")
    bucket = applied_pipeline.outputs["bucket_name"]

    def first_key(prefix: str, suffix: str = "") -> str:
        found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return next(o["Key"] for o in found if o["Key"].endswith(suffix))

    s3.create_bucket(Bucket=OTHER_BUCKET)
    s3.put_object(Bucket=OTHER_BUCKET, Key="data/x", Body=b"x")
    tuning_job = applied_pipeline.summary["tuning_job_name"]
    return World(
        principals=principals, outputs=applied_pipeline.outputs,
        account=applied_pipeline.account, roles=applied_pipeline.roles,
        data_key=first_key("data/"),
        # A trial's model, not the deployed one: a regression that let a row through must
        # not change what the end-to-end test checks.
        artifact_key=first_key(f"jobs/{tuning_job}-", "/output/model.tar.gz"),
        # Where the best trial checkpoints (the tuning job's prefix, then the trial's folder);
        # its training was too short to write one, but the operator may not start that file.
        checkpoint_key=(f"checkpoints/{tuning_job}/"
                        f"{applied_pipeline.summary['training_job_name']}/checkpoint.pt"),
        ciphertext=kms.encrypt(KeyId=applied_pipeline.outputs["kms_key_arn"],
                               Plaintext=b"secret")["CiphertextBlob"],
        other_key=kms.create_key(Description="another team's key")["KeyMetadata"]["Arn"])


@dataclass(frozen=True)
class Row:
    principal: str
    name: str
    action: str
    call: Callable[[World], Any]


def _rows() -> list[Row]:
    op, sm, fn, ec2 = "operator", "sagemaker", "lambda", "instance"
    rows = [
        # -- the operator: runs the pipeline, owns none of the infrastructure --------------
        Row(op, "delete the bucket", "s3:DeleteBucket",
            lambda w: w.client(op, "s3").delete_bucket(Bucket=w.bucket)),
        Row(op, "replace the bucket policy", "s3:PutBucketPolicy",
            lambda w: w.client(op, "s3").put_bucket_policy(Bucket=w.bucket, Policy=json.dumps(
                {"Version": "2012-10-17", "Statement": []}))),
        Row(op, "delete a data object", "s3:DeleteObject",
            lambda w: w.client(op, "s3").delete_object(Bucket=w.bucket, Key=w.data_key)),
        Row(op, "delete an artifact", "s3:DeleteObject",
            lambda w: w.client(op, "s3").delete_object(Bucket=w.bucket, Key=w.artifact_key)),
        Row(op, "overwrite an artifact under jobs/", "s3:PutObject",
            lambda w: w.client(op, "s3").put_object(Bucket=w.bucket, Key=w.artifact_key,
                                                    Body=b"not a model")),
        Row(op, "write a checkpoint", "s3:PutObject",
            lambda w: w.client(op, "s3").put_object(Bucket=w.bucket, Key=w.checkpoint_key,
                                                    Body=b"x")),
        Row(op, "list the whole bucket", "s3:ListBucket",
            lambda w: w.client(op, "s3").list_objects_v2(Bucket=w.bucket)),
        Row(op, "list checkpoints", "s3:ListBucket",
            lambda w: w.client(op, "s3").list_objects_v2(Bucket=w.bucket,
                                                         Prefix="checkpoints/")),
        Row(op, "read another bucket", "s3:GetObject",
            lambda w: w.client(op, "s3").get_object(Bucket=OTHER_BUCKET, Key="data/x")),
        Row(op, "schedule deletion of the bucket key", "kms:ScheduleKeyDeletion",
            lambda w: w.client(op, "kms").schedule_key_deletion(KeyId=w.key,
                                                                PendingWindowInDays=7)),
        Row(op, "disable the bucket key", "kms:DisableKey",
            lambda w: w.client(op, "kms").disable_key(KeyId=w.key)),
        Row(op, "read the key policy", "kms:GetKeyPolicy",
            lambda w: w.client(op, "kms").get_key_policy(KeyId=w.key, PolicyName="default")),
        Row(op, "replace the key policy", "kms:PutKeyPolicy",
            lambda w: w.client(op, "kms").put_key_policy(KeyId=w.key, PolicyName="default",
                                                         Policy=json.dumps({}))),
        Row(op, "decrypt with the bucket key directly, not through S3", "kms:Decrypt",
            lambda w: w.client(op, "kms").decrypt(KeyId=w.key, CiphertextBlob=w.ciphertext)),
        Row(op, "generate a data key directly", "kms:GenerateDataKey",
            lambda w: w.client(op, "kms").generate_data_key(KeyId=w.key, KeySpec="AES_256")),
        Row(op, "submit a training job outside the name prefix", "sagemaker:CreateTrainingJob",
            lambda w: w.client(op, "sagemaker").create_training_job(
                **w.training_job("someone-elses-train"))),
        Row(op, "submit a tuning job outside the name prefix",
            "sagemaker:CreateHyperParameterTuningJob",
            lambda w: w.client(op, "sagemaker").create_hyper_parameter_tuning_job(
                HyperParameterTuningJobName="someone-elses-tune",
                HyperParameterTuningJobConfig={
                    "Strategy": "Random", "ResourceLimits": {
                        "MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1}},
                TrainingJobDefinition={k: v for k, v in w.training_job("x").items()
                                       if k != "TrainingJobName"})),
        Row(op, "pass the Lambda role to SageMaker", "iam:PassRole",
            lambda w: w.client(op, "sagemaker").create_training_job(
                **w.training_job(f"{w.prefix}-security-passrole", role="lambda"))),
        Row(op, "stop another team's training job", "sagemaker:StopTrainingJob",
            lambda w: w.client(op, "sagemaker").stop_training_job(
                TrainingJobName="someone-elses-train")),
        Row(op, "describe another team's model", "sagemaker:DescribeModel",
            lambda w: w.client(op, "sagemaker").describe_model(ModelName="someone-elses-model")),
        Row(op, "create an endpoint", "sagemaker:CreateEndpoint",
            lambda w: w.client(op, "sagemaker").create_endpoint(
                EndpointName=f"{w.prefix}-rogue", EndpointConfigName=f"{w.prefix}-rogue")),
        Row(op, "delete the endpoint", "sagemaker:DeleteEndpoint",
            lambda w: w.client(op, "sagemaker").delete_endpoint(EndpointName=w.endpoint)),
        Row(op, "invoke the endpoint directly, past the Lambda", "sagemaker:InvokeEndpoint",
            lambda w: w.client(op, "sagemaker-runtime").invoke_endpoint(
                EndpointName=w.endpoint, ContentType="application/json", Body=b"{}")),
        Row(op, "create an IAM user", "iam:CreateUser",
            lambda w: w.client(op, "iam").create_user(UserName="backdoor")),
        Row(op, "attach AdministratorAccess to its own role", "iam:AttachRolePolicy",
            lambda w: w.client(op, "iam").attach_role_policy(
                RoleName=w.roles["operator"].rsplit("/", 1)[1], PolicyArn=ADMINISTRATOR_ACCESS)),
        Row(op, "assume the execution role itself", "sts:AssumeRole",
            lambda w: w.client(op, "sts").assume_role(RoleArn=w.roles["sagemaker"],
                                                      RoleSessionName="escalate")),
        Row(op, "update the function's code", "lambda:UpdateFunctionCode",
            lambda w: w.client(op, "lambda").update_function_code(FunctionName=w.function,
                                                                  ZipFile=b"PK\x05\x06" + bytes(18))),
        Row(op, "update the function's configuration", "lambda:UpdateFunctionConfiguration",
            lambda w: w.client(op, "lambda").update_function_configuration(
                FunctionName=w.function, Timeout=900)),
        Row(op, "delete the function", "lambda:DeleteFunction",
            lambda w: w.client(op, "lambda").delete_function(FunctionName=w.function)),
        Row(op, "invoke the function's $LATEST, past the alias", "lambda:InvokeFunction",
            lambda w: w.client(op, "lambda").invoke(FunctionName=w.function, Payload=b"{}")),
        Row(op, "read another log group", "logs:FilterLogEvents",
            lambda w: w.client(op, "logs").filter_log_events(
                logGroupName=f"/aws/lambda/{w.function}")),
        Row(op, "delete the training log group", "logs:DeleteLogGroup",
            lambda w: w.client(op, "logs").delete_log_group(
                logGroupName="/aws/sagemaker/TrainingJobs")),
        # -- a training job: the SageMaker execution role -------------------------------------
        Row(sm, "write into data/", "s3:PutObject",
            lambda w: w.client(sm, "s3").put_object(Bucket=w.bucket, Key=w.data_key,
                                                    Body=b"poisoned")),
        Row(sm, "write into code/", "s3:PutObject",
            lambda w: w.client(sm, "s3").put_object(
                Bucket=w.bucket, Key=f"{w.outputs['code_prefix']}/breedops.tar.gz", Body=b"x")),
        Row(sm, "read another bucket", "s3:GetObject",
            lambda w: w.client(sm, "s3").get_object(Bucket=OTHER_BUCKET, Key="data/x")),
        Row(sm, "delete an artifact", "s3:DeleteObject",
            lambda w: w.client(sm, "s3").delete_object(Bucket=w.bucket, Key=w.artifact_key)),
        Row(sm, "list the whole bucket", "s3:ListBucket",
            lambda w: w.client(sm, "s3").list_objects_v2(Bucket=w.bucket)),
        Row(sm, "create a training job (and pass a role)", "sagemaker:CreateTrainingJob",
            lambda w: w.client(sm, "sagemaker").create_training_job(
                **w.training_job(f"{w.prefix}-security-by-a-job"))),
        Row(sm, "create an endpoint", "sagemaker:CreateEndpoint",
            lambda w: w.client(sm, "sagemaker").create_endpoint(
                EndpointName=f"{w.prefix}-rogue", EndpointConfigName=f"{w.prefix}-rogue")),
        Row(sm, "create a function (and pass a role)", "lambda:CreateFunction",
            lambda w: w.client(sm, "lambda").create_function(
                FunctionName=f"{w.prefix}-rogue", Role=w.roles["lambda"], Runtime="python3.12",
                Handler="h.h", Code={"ZipFile": b"PK\x05\x06" + bytes(18)})),
        Row(sm, "decrypt with the bucket key directly, not through S3", "kms:Decrypt",
            lambda w: w.client(sm, "kms").decrypt(KeyId=w.key, CiphertextBlob=w.ciphertext)),
        Row(sm, "generate a data key directly", "kms:GenerateDataKey",
            lambda w: w.client(sm, "kms").generate_data_key(KeyId=w.key, KeySpec="AES_256")),
        Row(sm, "read the key policy", "kms:GetKeyPolicy",
            lambda w: w.client(sm, "kms").get_key_policy(KeyId=w.key, PolicyName="default")),
        Row(sm, "use another key", "kms:DescribeKey",
            lambda w: w.client(sm, "kms").describe_key(KeyId=w.other_key)),
        Row(sm, "create a log group outside /aws/sagemaker", "logs:CreateLogGroup",
            lambda w: w.client(sm, "logs").create_log_group(logGroupName="/aws/lambda/other")),
        Row(sm, "put metrics in another namespace", "cloudwatch:PutMetricData",
            lambda w: w.client(sm, "cloudwatch").put_metric_data(
                Namespace="Other", MetricData=[{"MetricName": "m", "Value": 1.0}])),
        Row(sm, "invoke the function", "lambda:InvokeFunction",
            lambda w: w.client(sm, "lambda").invoke(FunctionName=w.function, Qualifier="live",
                                                    Payload=b"{}")),
        Row(sm, "create an IAM user", "iam:CreateUser",
            lambda w: w.client(sm, "iam").create_user(UserName="backdoor-from-a-job")),
        # -- the inference Lambda -------------------------------------------------------------
        Row(fn, "read data/", "s3:GetObject",
            lambda w: w.client(fn, "s3").get_object(Bucket=w.bucket, Key=w.data_key)),
        Row(fn, "read an artifact", "s3:GetObject",
            lambda w: w.client(fn, "s3").get_object(Bucket=w.bucket, Key=w.artifact_key)),
        Row(fn, "write an artifact", "s3:PutObject",
            lambda w: w.client(fn, "s3").put_object(Bucket=w.bucket, Key=w.artifact_key,
                                                    Body=b"x")),
        Row(fn, "invoke another endpoint", "sagemaker:InvokeEndpoint",
            lambda w: w.client(fn, "sagemaker-runtime").invoke_endpoint(
                EndpointName="someone-elses-endpoint", ContentType="application/json",
                Body=b"{}")),
        Row(fn, "update its own function's configuration", "lambda:UpdateFunctionConfiguration",
            lambda w: w.client(fn, "lambda").update_function_configuration(
                FunctionName=w.function, Timeout=900)),
        Row(fn, "update its own function's code", "lambda:UpdateFunctionCode",
            lambda w: w.client(fn, "lambda").update_function_code(
                FunctionName=w.function, ZipFile=b"PK\x05\x06" + bytes(18))),
        Row(fn, "create an endpoint", "sagemaker:CreateEndpoint",
            lambda w: w.client(fn, "sagemaker").create_endpoint(
                EndpointName=f"{w.prefix}-rogue", EndpointConfigName=f"{w.prefix}-rogue")),
        Row(fn, "delete the endpoint", "sagemaker:DeleteEndpoint",
            lambda w: w.client(fn, "sagemaker").delete_endpoint(EndpointName=w.endpoint)),
        Row(fn, "create its log group (Terraform owns it)", "logs:CreateLogGroup",
            lambda w: w.client(fn, "logs").create_log_group(
                logGroupName=f"/aws/lambda/{w.function}-x")),
        Row(fn, "write another function's logs", "logs:CreateLogStream",
            lambda w: w.client(fn, "logs").create_log_stream(logGroupName="/aws/lambda/other",
                                                             logStreamName="s")),
        Row(fn, "use the bucket key", "kms:DescribeKey",
            lambda w: w.client(fn, "kms").describe_key(KeyId=w.key)),
        # -- the EC2 training instance --------------------------------------------------------
        Row(ec2, "write into code/", "s3:PutObject",
            lambda w: w.client(ec2, "s3").put_object(
                Bucket=w.bucket, Key=f"{w.outputs['code_prefix']}/breedops.tar.gz", Body=b"x")),
        Row(ec2, "write into data/", "s3:PutObject",
            lambda w: w.client(ec2, "s3").put_object(Bucket=w.bucket, Key=w.data_key,
                                                     Body=b"poisoned")),
        Row(ec2, "list the whole bucket", "s3:ListBucket",
            lambda w: w.client(ec2, "s3").list_objects_v2(Bucket=w.bucket)),
        Row(ec2, "list code/ (the source is read by its key)", "s3:ListBucket",
            lambda w: w.client(ec2, "s3").list_objects_v2(
                Bucket=w.bucket, Prefix=f"{w.outputs['code_prefix']}/")),
        Row(ec2, "delete an artifact", "s3:DeleteObject",
            lambda w: w.client(ec2, "s3").delete_object(Bucket=w.bucket, Key=w.artifact_key)),
        Row(ec2, "read another bucket", "s3:GetObject",
            lambda w: w.client(ec2, "s3").get_object(Bucket=OTHER_BUCKET, Key="data/x")),
        Row(ec2, "decrypt with the bucket key directly, not through S3", "kms:Decrypt",
            lambda w: w.client(ec2, "kms").decrypt(KeyId=w.key, CiphertextBlob=w.ciphertext)),
        Row(ec2, "create a training job", "sagemaker:CreateTrainingJob",
            lambda w: w.client(ec2, "sagemaker").create_training_job(
                **w.training_job(f"{w.prefix}-security-by-an-instance"))),
        Row(ec2, "launch more instances", "ec2:RunInstances",
            lambda w: w.client(ec2, "ec2").run_instances(ImageId="ami-12345678", MinCount=1,
                                                         MaxCount=1)),
        Row(ec2, "put its role in another instance profile", "iam:AddRoleToInstanceProfile",
            lambda w: w.client(ec2, "iam").add_role_to_instance_profile(
                InstanceProfileName="other", RoleName=w.roles["instance"].rsplit("/", 1)[1])),
    ]
    return rows


ROWS = _rows()


def _is_access_denied(error: ClientError) -> bool:
    # JSON-protocol services get moto's XML denial, which botocore reports as a bare 403.
    return (error.response["Error"]["Code"] in DENIED_CODES
            or "<Code>AccessDenied</Code>" in error.response["Error"].get("Message", ""))


def test_the_matrix_is_large_and_covers_every_role():
    assert len(ROWS) >= 40
    assert {r.principal for r in ROWS} == {"operator", "sagemaker", "lambda", "instance"}
    assert len({(r.principal, r.name) for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.principal}: {r.name}" for r in ROWS])
def test_denied(pipeline_env, world: World, row: Row):
    principal = world.principals[row.principal]
    audit = pipeline_env.audit_path
    before = len(read_audit(audit))

    with pytest.raises(ClientError) as raised:
        row.call(world)

    error = raised.value.response["Error"]
    assert _is_access_denied(raised.value), f"{row.name}: {error}, not an access denial"
    message = error.get("Message", "")
    if "not authorized to perform" in message:
        assert f"perform: {row.action}" in message, message
    decisions = read_audit(audit)[before:]
    assert any(d["principal"] == principal.arn and d["action"] == row.action
               and not d["allowed"] for d in decisions), (
        f"{row.name}: no denial of {row.action} for {principal.arn} in the audit, but "
        f"{[(d['action'], d['allowed']) for d in decisions]}")


# -- the trust policies: which service may assume which role, for whom -----------------------

TRUST_ROWS = [
    ("sagemaker", "sagemaker.amazonaws.com",
     f"arn:aws:sagemaker:{DEFAULT_REGION}:{OTHER_ACCOUNT}:training-job/breedops-local-x",
     "SageMaker, for a job of another account (the confused deputy)"),
    ("sagemaker", "sagemaker.amazonaws.com", None, "SageMaker, for no job at all"),
    ("sagemaker", "lambda.amazonaws.com", None, "Lambda"),
    ("sagemaker", "ec2.amazonaws.com", None, "EC2"),
    ("lambda", "sagemaker.amazonaws.com", None, "SageMaker"),
    ("instance", "sagemaker.amazonaws.com", None, "SageMaker"),
    ("operator", "ec2.amazonaws.com", None, "EC2"),
    ("operator", "sagemaker.amazonaws.com", None, "SageMaker"),
]


@pytest.mark.parametrize("role,service,source,who", TRUST_ROWS,
                         ids=[f"{r[0]} refuses {r[3]}" for r in TRUST_ROWS])
def test_trust_refuses(pipeline_env, role, service, source, who):
    from breedops.local.service_roles import ServiceRoleError, assume_over_http

    with pytest.raises(ServiceRoleError) as raised:
        assume_over_http(pipeline_env.roles[role], service, "security-tests", source_arn=source)

    assert raised.value.code == "AccessDenied"
    assert "sts:AssumeRole" in raised.value.message


# -- what no request reaches: iam:PassRole is implied, InvokeEndpointAsync is not served ------

def test_only_the_operator_passes_a_role_and_only_the_execution_role_to_sagemaker(
        applied_pipeline):
    roles = applied_pipeline.roles
    services = ("sagemaker.amazonaws.com", "lambda.amazonaws.com", "ec2.amazonaws.com")
    allowed = []
    for principal in roles:
        policies = applied_pipeline.policies(principal)
        for passed in roles.values():
            for service in services:
                if iam_enforcement.is_allowed(policies, "iam:PassRole", passed,
                                              {"iam:PassedToService": service}):
                    allowed.append((principal, passed.rsplit("/", 1)[1], service))
    assert allowed == [("operator", roles["sagemaker"].rsplit("/", 1)[1],
                        "sagemaker.amazonaws.com")]


def test_the_lambda_invokes_only_its_own_endpoint_synchronously(applied_pipeline):
    policies = applied_pipeline.policies("lambda")
    arn = f"arn:aws:sagemaker:{DEFAULT_REGION}:{applied_pipeline.account}:endpoint/{{}}"
    endpoint = applied_pipeline.outputs["endpoint_name"]
    assert iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpoint", arn.format(endpoint))
    assert not iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpoint",
                                          arn.format("someone-elses-endpoint"))
    assert not iam_enforcement.is_allowed(policies, "sagemaker:InvokeEndpointAsync",
                                          arn.format(endpoint))


# -- requests without valid credentials -------------------------------------------------------

UNKNOWN_KEY = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
               "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def _stranger(service: str) -> Any:
    return boto3.Session(region_name=DEFAULT_REGION, **UNKNOWN_KEY).client(service)


def _unsigned(service: str) -> Any:
    return boto3.Session(region_name=DEFAULT_REGION).client(
        service, config=Config(signature_version=UNSIGNED))


def _wrong_secret(service: str) -> Any:
    return boto3.Session(region_name=DEFAULT_REGION,
                         aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key="not-the-secret").client(service)


CREDENTIAL_ROWS = [
    ("an unknown key, IAM", "InvalidClientTokenId", lambda w: _stranger("iam").list_users()),
    ("an unknown key, STS", "InvalidClientTokenId",
     lambda w: _stranger("sts").get_caller_identity()),
    ("an unknown key, S3", "InvalidAccessKeyId",
     lambda w: _stranger("s3").list_objects_v2(Bucket=w.bucket, Prefix="data/")),
    ("an unknown key, SageMaker Runtime", "UnrecognizedClientException",
     lambda w: _stranger("sagemaker-runtime").invoke_endpoint(
         EndpointName=w.endpoint, ContentType="application/json", Body=b"{}")),
    ("the admin's key with a wrong secret", "SignatureDoesNotMatch",
     lambda w: _wrong_secret("iam").list_users()),
    # moto answers an anonymous read of an existing object with a bare 403 (no XML body, so
    # botocore's code is "403"); AWS's body says AccessDenied. Denied either way.
    ("unsigned, S3 object", "403",
     lambda w: _unsigned("s3").get_object(Bucket=w.bucket, Key=w.data_key)),
    ("unsigned, S3 listing", "AccessDenied",
     lambda w: _unsigned("s3").list_objects_v2(Bucket=w.bucket)),
    ("unsigned, SageMaker", "AccessDenied", lambda w: _unsigned("sagemaker").list_endpoints()),
    ("unsigned, KMS", "AccessDenied",
     lambda w: _unsigned("kms").decrypt(KeyId=w.key, CiphertextBlob=w.ciphertext)),
    ("unsigned, SageMaker Runtime", "MissingAuthenticationTokenException",
     lambda w: _unsigned("sagemaker-runtime").invoke_endpoint(
         EndpointName=w.endpoint, ContentType="application/json", Body=b"{}")),
]


@pytest.mark.parametrize("name,code,call", CREDENTIAL_ROWS, ids=[r[0] for r in CREDENTIAL_ROWS])
def test_refused_without_valid_credentials(pipeline_env, world, name, code, call):
    with pytest.raises(ClientError) as raised:
        call(world)

    error = raised.value.response.get("Error", {})
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403), error
    if code == "AccessDenied":
        assert _is_access_denied(raised.value), error
    else:
        assert error.get("Code") == code, error
