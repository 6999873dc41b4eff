"""Helpers shared by the job tests."""

from __future__ import annotations

import json

SAGEMAKER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


def create_role(iam, name: str) -> str:
    """A role that SageMaker may assume (its policies do not matter while IAM is not enforced)."""
    return iam.create_role(RoleName=name,
                           AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]["Arn"]
