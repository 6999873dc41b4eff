"""Helpers shared by the job tests."""

from __future__ import annotations

import json

SAGEMAKER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}
# The `*`-resource actions the SDK v3 checks on an execution role before it submits a job.
SAGEMAKER_SMOKE_TEST_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "SdkRoleValidation", "Effect": "Allow", "Resource": "*",
    "Action": ["ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "ec2:Describe*",
               "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
               "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"]}]}


def create_role(iam, name: str, policy: dict | None) -> str:
    arn = iam.create_role(RoleName=name,
                          AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]["Arn"]
    if policy:
        iam.put_role_policy(RoleName=name, PolicyName="sdk", PolicyDocument=json.dumps(policy))
    return arn
