"""Roles for tests against the emulator, which enforces IAM as AWS does.

`create_execution_role` gives a SageMaker execution role what a job needs on its own test
bucket (read and write its objects, its logs and metrics), so a test job succeeds or fails
for the reason it tests, not for a missing grant. The product's own, prefix-scoped policies are
proven by tests/security, from the Terraform that deploys them.
"""

from __future__ import annotations

import json

SAGEMAKER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


def job_policy(bucket: str) -> dict:
    """What a training job needs: its bucket's objects, its logs and its metrics."""
    arn = f"arn:aws:s3:::{bucket}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn},
        {"Sid": "ReadWrite", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
         "Resource": f"{arn}/*"},
        {"Sid": "Logs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                    "logs:DescribeLogStreams"],
         "Resource": "arn:aws:logs:*:*:log-group:/aws/sagemaker/*"},
        {"Sid": "Metrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
         "Resource": "*"},
    ]}


def create_execution_role(iam, name: str, bucket: str) -> str:
    """A role SageMaker may assume, allowed the job contract on `bucket`; its ARN."""
    arn = iam.create_role(RoleName=name,
                          AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="job-contract",
                        PolicyDocument=json.dumps(job_policy(bucket)))
    return arn
