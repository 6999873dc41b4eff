# The shared mocks: terraform/testing/aws/aws.tfmock.hcl.
mock_provider "aws" {
  source = "../../testing/aws"
}

variables {
  name_prefix          = "breedops-test"
  bucket_arn           = "arn:aws:s3:::breedops-test-data-123456789012"
  kms_key_arn          = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  endpoint_name        = "breedops-test-endpoint"
  lambda_function_name = "breedops-test-inference"
  lambda_alias         = "live"
  prefixes             = { data = "data/", jobs = "jobs/", checkpoints = "checkpoints/", code = "code/" }
}

run "no_wildcard_actions_and_sid_everywhere" {
  command = apply

  variables {
    create_training_instance_profile = true
    lambda_tracing_enabled           = true
  }

  assert {
    condition = alltrue(flatten([
      for doc in [
        data.aws_iam_policy_document.s3_training, data.aws_iam_policy_document.kms_use,
        data.aws_iam_policy_document.sagemaker_execution, data.aws_iam_policy_document.lambda,
        data.aws_iam_policy_document.lambda_tracing, data.aws_iam_policy_document.training_instance,
        data.aws_iam_policy_document.operator,
        ] : [
        for s in doc.statement : alltrue([for a in s.actions : !strcontains(a, "*")])
      ]
    ]))
    error_message = "No IAM statement may grant a wildcard action."
  }

  assert {
    condition = alltrue(flatten([
      for doc in [
        data.aws_iam_policy_document.s3_training, data.aws_iam_policy_document.kms_use,
        data.aws_iam_policy_document.sagemaker_execution, data.aws_iam_policy_document.lambda,
        data.aws_iam_policy_document.lambda_tracing, data.aws_iam_policy_document.training_instance,
        data.aws_iam_policy_document.operator,
      ] : [for s in doc.statement : s.sid != null && s.sid != ""]
    ]))
    error_message = "Every IAM statement must carry a sid."
  }

  assert {
    condition = toset(flatten([
      for doc in [
        data.aws_iam_policy_document.sagemaker_execution, data.aws_iam_policy_document.lambda,
        data.aws_iam_policy_document.lambda_tracing, data.aws_iam_policy_document.training_instance,
        data.aws_iam_policy_document.operator, data.aws_iam_policy_document.s3_training,
        ] : [
        for s in doc.statement : s.sid if contains(s.resources, "*")
      ]
    ])) == toset(["PutMetricsInSageMakerNamespaces", "EcrAuthorizationToken", "WriteXRayTraces", "SessionManagerChannels"])
    error_message = "Resource \"*\" is allowed only for the actions AWS cannot scope: PutMetricData, GetAuthorizationToken, X-Ray writes and Session Manager channels."
  }

  assert {
    condition     = aws_iam_instance_profile.training_instance[0].name == "breedops-test-training-instance"
    error_message = "The training instance profile must exist when create_training_instance_profile is true."
  }
}

run "sagemaker_execution_role_is_scoped_to_prefixes" {
  command = apply

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.s3_training.statement : s if s.sid == "ListBucketByPrefix"
      ]).resources == toset(["arn:aws:s3:::breedops-test-data-123456789012"]) && toset(one([
        for s in data.aws_iam_policy_document.s3_training.statement : s if s.sid == "ListBucketByPrefix"
    ]).condition[*].variable) == toset(["s3:prefix"])
    error_message = "s3:ListBucket must be on the bucket alone and limited by an s3:prefix condition."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.s3_training.statement : s if s.sid == "WriteJobsAndCheckpoints"
      ]).resources == toset([
      "arn:aws:s3:::breedops-test-data-123456789012/jobs/*",
      "arn:aws:s3:::breedops-test-data-123456789012/checkpoints/*",
    ])
    error_message = "Training may write only under jobs/ and checkpoints/."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.sagemaker_execution.statement : s if s.sid == "WriteSageMakerLogs"
      ]).resources == toset([
      "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/*",
      "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/*:log-stream:*",
    ])
    error_message = "The execution role may write logs only to the /aws/sagemaker/ log groups."
  }

  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.sagemaker_execution.statement : [for c in s.condition : c.variable]
      if s.sid == "PutMetricsInSageMakerNamespaces"
    ])) == toset(["cloudwatch:namespace"])
    error_message = "cloudwatch:PutMetricData must be limited by a cloudwatch:namespace condition."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.sagemaker_execution.statement : s if s.sid == "PullFrameworkImages"
      ]).resources == toset([
      "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-training",
      "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-inference",
    ])
    error_message = "ECR pulls must be limited to the framework image repositories."
  }

  assert {
    condition     = length(aws_iam_instance_profile.training_instance) == 0
    error_message = "The training instance profile must not exist by default."
  }
}

run "lambda_role_invokes_exactly_one_endpoint" {
  command = apply

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.lambda.statement : s if s.sid == "InvokeTheEndpoint"
    ]).resources == toset(["arn:aws:sagemaker:us-east-1:123456789012:endpoint/breedops-test-endpoint"])
    error_message = "The Lambda role may invoke exactly the one endpoint ARN."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.lambda.statement : s if s.sid == "WriteOwnLogs"
    ]).resources == toset(["arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/breedops-test-inference:log-stream:*"])
    error_message = "The Lambda role may write logs only to its own log group."
  }

  assert {
    condition     = length(data.aws_iam_policy_document.lambda.source_policy_documents) == 0
    error_message = "X-Ray permissions must be granted only when tracing is enabled."
  }
}

run "operator_is_limited_to_project_prefix_and_passrole_condition" {
  command = apply

  assert {
    condition = alltrue([
      for r in one([for s in data.aws_iam_policy_document.operator.statement : s if s.sid == "ManageProjectJobsAndModels"]).resources :
      endswith(r, "/breedops-test-*")
    ])
    error_message = "The operator may manage only jobs whose names start with the project prefix and a hyphen."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.operator.statement : s if s.sid == "InvokeTheFunctionAlias"
    ]).resources == toset(["arn:aws:lambda:us-east-1:123456789012:function:breedops-test-inference:live"])
    error_message = "The operator may invoke only the function's live alias (the smoke test)."
  }

  assert {
    condition     = length(aws_iam_role.operator) == 0
    error_message = "Without operator_principals there is no operator role (the caller runs the pipeline)."
  }

  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.operator.statement : s.resources if s.sid == "PassExecutionRoleToSageMaker"
      ])) == toset(["arn:aws:iam::123456789012:role/breedops-test-sagemaker-execution"]) && toset(flatten([
      for s in data.aws_iam_policy_document.operator.statement : [for c in s.condition : "${c.variable}=${join(",", c.values)}"]
      if s.sid == "PassExecutionRoleToSageMaker"
    ])) == toset(["iam:PassedToService=sagemaker.amazonaws.com"])
    error_message = "iam:PassRole must name only the execution role and require iam:PassedToService = sagemaker.amazonaws.com."
  }
}

# The layout is the data_bucket module's: another set of prefixes must move every S3 grant with it.
run "s3_grants_follow_the_given_prefixes" {
  command = apply

  variables {
    prefixes = { data = "in/", jobs = "out/", checkpoints = "ckpt/", code = "src/" }
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.s3_training.statement : s if s.sid == "WriteJobsAndCheckpoints"
      ]).resources == toset([
      "arn:aws:s3:::breedops-test-data-123456789012/out/*",
      "arn:aws:s3:::breedops-test-data-123456789012/ckpt/*",
    ])
    error_message = "Training must write under the given jobs and checkpoints prefixes."
  }

  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.operator.statement : [for c in s.condition : c.values]
      if s.sid == "ListBucketByPrefix"
    ])) == toset(["in/*", "out/*", "src", "src/*"])
    error_message = "The operator must list only the given data, jobs and code prefixes (and probe the code prefix itself)."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.sagemaker_execution.statement : s if s.sid == "ReadJobSource"
    ]).resources == toset(["arn:aws:s3:::breedops-test-data-123456789012/src/*"])
    error_message = "The execution role must read job source under the given code prefix."
  }
}

run "operator_role_trusts_exactly_the_given_principals" {
  command = apply

  variables {
    operator_principals = ["arn:aws:iam::123456789012:role/ci"]
  }

  assert {
    condition     = aws_iam_role.operator[0].name == "breedops-test-operator"
    error_message = "The operator role is named after the prefix."
  }

  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.operator_assume.statement : [for p in s.principals : p.identifiers]
    ])) == toset(["arn:aws:iam::123456789012:role/ci"])
    error_message = "The operator role trusts exactly operator_principals."
  }
}

run "sagemaker_trust_prevents_a_confused_deputy" {
  command = apply

  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.sagemaker_assume.statement : [for c in s.condition : "${c.test} ${c.variable}=${join(",", c.values)}"]
    ])) == toset(["StringEquals aws:SourceAccount=123456789012", "ArnLike aws:SourceArn=arn:aws:sagemaker:us-east-1:123456789012:*"])
    error_message = "SageMaker may assume the execution role only for this account's own resources."
  }
}

run "training_instance_reads_its_source_and_data_writes_only_outputs" {
  command = apply

  variables {
    create_training_instance_profile = true
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.training_instance.statement : s if s.sid == "ReadTrainingSource"
      ]).resources == toset(["arn:aws:s3:::breedops-test-data-123456789012/code/*"]) && one([
      for s in data.aws_iam_policy_document.training_instance.statement : s if s.sid == "ReadTrainingSource"
    ]).actions == toset(["s3:GetObject"])
    error_message = "The training instance may read the training source under code/ (GetObject only: it downloads one key)."
  }

  assert {
    condition = toset(data.aws_iam_policy_document.training_instance.source_policy_documents) == toset([
      data.aws_iam_policy_document.s3_training.json, data.aws_iam_policy_document.kms_use.json,
    ])
    error_message = "The training instance gets the shared training S3 grants (data read, jobs and checkpoints write, prefix-scoped listing) and the bucket key."
  }
}

run "reject_uppercase_name_prefix" {
  command = plan
  variables {
    name_prefix = "Breedops"
  }
  expect_failures = [var.name_prefix]
}

run "reject_bucket_arn_that_is_not_s3" {
  command = plan
  variables {
    bucket_arn = "arn:aws:iam::123456789012:role/x"
  }
  expect_failures = [var.bucket_arn]
}

run "reject_kms_arn_that_is_not_a_key" {
  command = plan
  variables {
    kms_key_arn = "alias/x"
  }
  expect_failures = [var.kms_key_arn]
}

run "reject_framework_account_that_is_not_12_digits" {
  command = plan
  variables {
    framework_image_repositories = { account_id = "7631" }
  }
  expect_failures = [var.framework_image_repositories]
}

run "reject_wildcard_metric_namespace" {
  command = plan
  variables {
    metric_namespaces = ["*"]
  }
  expect_failures = [var.metric_namespaces]
}

run "reject_invalid_endpoint_name" {
  command = plan
  variables {
    endpoint_name = "bad_name!"
  }
  expect_failures = [var.endpoint_name]
}

run "reject_invalid_lambda_function_name" {
  command = plan
  variables {
    lambda_function_name = "bad name"
  }
  expect_failures = [var.lambda_function_name]
}

run "reject_prefix_without_slash" {
  command = plan
  variables {
    prefixes = { data = "data", jobs = "jobs/", checkpoints = "checkpoints/", code = "code/" }
  }
  expect_failures = [var.prefixes]
}
