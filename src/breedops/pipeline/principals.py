"""Who runs each pipeline stage, locally as on AWS.

- the *deployer* runs Terraform: the caller's own credentials (locally the emulator's bootstrap
  admin; on AWS the role whose policies docs/DEPLOYER.md documents: read-only plus the state
  lock for the pull-request workflow's plan, the apply policy for `make apply`);
- the *operator* runs everything else (data upload, jobs, artifact reads, the smoke test): the
  operator role that Terraform creates, assumed by the deployer. Locally it always exists; on
  AWS it exists when `operator_principals` names who may assume it, else the stage runs as the
  caller, who then needs the operator policy.

A stage runs with its principal's credentials in the standard variables, so every client it
makes (boto3, the SageMaker SDK, the AWS CLI it prints) acts as that principal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from breedops.errors import ConfigurationError

log = logging.getLogger(__name__)

DEPLOYER = "deployer"
OPERATOR = "operator"
OPERATOR_ROLE_OUTPUT = "operator_role_arn"
SESSION_NAME = "breedops-pipeline"
# Renew the operator's session this long before it expires (a tuning job can run for hours).
RENEW_BEFORE_SECONDS = 300
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def caller_arn() -> str:
    """The ARN the current credentials act as."""
    import boto3

    return boto3.client("sts").get_caller_identity()["Arn"]


class Principals:
    """The deployer's credentials as the process has them, and the operator's, assumed."""

    def __init__(self) -> None:
        self._operator: dict[str, Any] | None = None

    @contextmanager
    def act_as(self, principal: str, outputs: dict[str, Any]) -> Iterator[str]:
        """Run the body as `principal`; yields the ARN it acts as."""
        role_arn = (outputs.get("terraform_outputs") or {}).get(OPERATOR_ROLE_OUTPUT)
        if principal == DEPLOYER or not role_arn:
            yield caller_arn()
            return
        credentials = self._operator_credentials(role_arn)
        with _credentials_in_environment(credentials):
            yield credentials["Arn"]

    def _operator_credentials(self, role_arn: str) -> dict[str, Any]:
        cached = self._operator
        if cached and cached["RoleArn"] == role_arn and \
                cached["Expiration"] - time.time() > RENEW_BEFORE_SECONDS:
            return cached
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            assumed = boto3.client("sts").assume_role(RoleArn=role_arn,
                                                      RoleSessionName=SESSION_NAME)
        except (BotoCoreError, ClientError) as e:
            raise ConfigurationError(
                f"cannot assume the operator role {role_arn} as {caller_arn()}: {e}; the "
                "caller must be listed in operator_principals") from e
        credentials = assumed["Credentials"]
        self._operator = {
            "RoleArn": role_arn, "Arn": assumed["AssumedRoleUser"]["Arn"],
            "AccessKeyId": credentials["AccessKeyId"],
            "SecretAccessKey": credentials["SecretAccessKey"],
            "SessionToken": credentials["SessionToken"],
            "Expiration": credentials["Expiration"].timestamp(),
        }
        return self._operator


@contextmanager
def _credentials_in_environment(credentials: dict[str, Any]) -> Iterator[None]:
    """The credentials in the standard variables (no profile), restored afterwards."""
    import boto3

    saved = {name: os.environ.get(name) for name in CREDENTIAL_VARIABLES}
    saved_session = boto3.DEFAULT_SESSION
    for name in CREDENTIAL_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update({"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                       "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                       "AWS_SESSION_TOKEN": credentials["SessionToken"]})
    boto3.DEFAULT_SESSION = None  # it caches the credentials it resolved first
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = saved_session
