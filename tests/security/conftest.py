"""An emulator with IAM enforcement on, the local env applied in it, and each role's session.

Module-scoped: one emulator and one `terraform apply` (tens of seconds) serve every test here.
The first three requests (an admin user, its policy and its key) pass unauthenticated; from
then on every request is signed and checked. Terraform applies as the admin; each role is then
assumed with its own credentials. The roles trust AWS services, so the admin user is added to
their trust policies: their permissions, which is what the tests check, are unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from sandbox import make_sandbox

from breedops.local import emulator
from breedops.settings import DEFAULT_REGION

BOOTSTRAP_REQUESTS = 3
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"}]}
PREFIX = "breedops-local"
ARTIFACT_KEY = "jobs/train-001/output/model.tar.gz"


@dataclass
class EnforcedEnvironment:
    """The applied environment: its outputs, the admin session and one session per role."""

    outputs: dict
    admin: boto3.Session
    roles: dict[str, boto3.Session]
    policies: dict[str, list[str]]


def _session(credentials: dict) -> boto3.Session:
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials.get("SessionToken"),
                         region_name=DEFAULT_REGION)


def _attached_documents(iam, role_name: str) -> list[str]:
    documents = []
    for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=policy["Arn"],
                                         VersionId=policy["DefaultVersionId"])
        document = version["PolicyVersion"]["Document"]
        documents.append(document if isinstance(document, str) else json.dumps(document))
    return documents


def _assume(admin: boto3.Session, admin_arn: str, role_name: str) -> boto3.Session:
    iam = admin.client("iam")
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    trust["Statement"].append({"Sid": "TestAdmin", "Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"AWS": admin_arn}})
    iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trust))
    arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    credentials = admin.client("sts").assume_role(RoleArn=arn, RoleSessionName="test")
    return _session(credentials["Credentials"])


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnforcedEnvironment]:
    from breedops import terraform

    root = tmp_path_factory.mktemp("enforced")
    make_sandbox(root)
    service = dataclasses.replace(
        emulator.emulator_service(port=emulator.free_port()), name="emulator-enforced",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS)},
    )
    state = root / "emulator"
    state.mkdir()
    running = emulator.start_service(service, state)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", running.url)
        mp.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
        mp.setenv("AWS_REGION", DEFAULT_REGION)
        mp.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
        mp.setenv("BREEDOPS_ROOT", str(root))
        mp.setenv("BREEDOPS_STATE_DIR", str(root / ".local"))
        try:
            bootstrap = boto3.Session(aws_access_key_id="testing",
                                      aws_secret_access_key="testing",
                                      region_name=DEFAULT_REGION).client("iam")
            user = bootstrap.create_user(UserName="admin")["User"]
            bootstrap.put_user_policy(UserName="admin", PolicyName="admin",
                                      PolicyDocument=json.dumps(ADMIN_POLICY))
            key = bootstrap.create_access_key(UserName="admin")["AccessKey"]
            mp.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            mp.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
            admin = _session(key)

            artifact = {"model_artifact": {
                "model_data_url": f"s3://{PREFIX}-data-123456789012/{ARTIFACT_KEY}",
                "training_job_name": "train-001",
                "training_job_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/"
                                    "train-001",
            }}
            (root / "terraform" / "envs" / "local" / "artifacts.auto.tfvars.json").write_text(
                json.dumps(artifact))
            outputs = terraform.apply("local")
            admin.client("s3").put_object(Bucket=outputs["bucket_name"], Key=ARTIFACT_KEY,
                                          Body=b"model")

            iam = admin.client("iam")
            operator = f"{PREFIX}-operator-test"
            iam.create_role(RoleName=operator, AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole",
                     "Principal": {"Service": "ec2.amazonaws.com"}}]}))
            iam.attach_role_policy(RoleName=operator, PolicyArn=outputs["operator_policy_arn"])
            names = {"operator": operator,
                     "sagemaker": f"{PREFIX}-sagemaker-execution",
                     "lambda": f"{PREFIX}-inference-lambda"}
            yield EnforcedEnvironment(
                outputs=outputs, admin=admin,
                roles={k: _assume(admin, user["Arn"], n) for k, n in names.items()},
                policies={k: _attached_documents(iam, n) for k, n in names.items()},
            )
        finally:
            emulator.stop_service(service, state)
