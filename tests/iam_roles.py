"""Roles for tests against the emulator, which enforces IAM as AWS does.

`create_execution_role` gives a SageMaker execution role the job contract on one bucket (read
`code/`, `data/` and `checkpoints/`, write `jobs/` and `checkpoints/`, its logs and metrics),
so a test job succeeds or fails for the reason it tests, not for a missing grant. The product's
own policies are proven by tests/security, from the Terraform that deploys them.
"""

from __future__ import annotations

import json

SAGEMAKER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


def job_policy(bucket: str) -> dict:
    """What a training job needs on `bucket`, by the S3 layout of the job contract."""
    arn = f"arn:aws:s3:::{bucket}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn},
        {"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [f"{arn}/code/*", f"{arn}/data/*", f"{arn}/checkpoints/*",
                      f"{arn}/jobs/*"]},
        {"Sid": "Write", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
         "Resource": [f"{arn}/jobs/*", f"{arn}/checkpoints/*"]},
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
