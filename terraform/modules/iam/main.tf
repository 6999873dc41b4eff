data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  arn_prefix = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"

  # SageMaker stores resource names lowercased in ARNs.
  endpoint_arn         = "${local.arn_prefix}:endpoint/${lower(var.endpoint_name)}"
  lambda_log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${var.lambda_function_name}"
  sagemaker_log_arn    = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/*"
  framework_repository_arns = [
    for name in var.framework_image_repositories.names :
    "arn:${local.partition}:ecr:${local.region}:${var.framework_image_repositories.account_id}:repository/${name}"
  ]
}

################################################################################
# Shared building blocks: S3 by prefix and use of the bucket key
################################################################################

data "aws_iam_policy_document" "kms_use" {
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }
}

data "aws_iam_policy_document" "s3_training" {
  statement {
    sid       = "ListBucketByPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["data/*", "jobs/*", "checkpoints/*"]
    }
  }

  statement {
    sid       = "ReadDataAndCheckpoints"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/data/*", "${var.bucket_arn}/checkpoints/*"]
  }

  statement {
    sid       = "WriteJobsAndCheckpoints"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${var.bucket_arn}/jobs/*", "${var.bucket_arn}/checkpoints/*"]
  }
}

################################################################################
# SageMaker execution role (training and hosting)
################################################################################

data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    sid     = "SageMakerAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "sagemaker_execution" {
  source_policy_documents = [
    data.aws_iam_policy_document.s3_training.json,
    data.aws_iam_policy_document.kms_use.json,
  ]

  # Hosting downloads the model.tar.gz from jobs/<name>/output/.
  statement {
    sid       = "ReadJobArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/jobs/*"]
  }

  statement {
    sid = "WriteSageMakerLogs"
    actions = [
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [local.sagemaker_log_arn, "${local.sagemaker_log_arn}:log-stream:*"]
  }

  # PutMetricData has no resource type; AWS only allows Resource "*", so the namespace condition scopes it.
  statement {
    sid       = "PutMetricsInSageMakerNamespaces"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = var.metric_namespaces
    }
  }

  # GetAuthorizationToken has no resource type; AWS only allows Resource "*".
  statement {
    sid       = "EcrAuthorizationToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullFrameworkImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = local.framework_repository_arns
  }
}

resource "aws_iam_role" "sagemaker_execution" {
  name                 = "${var.name_prefix}-sagemaker-execution"
  description          = "Runs the ${var.name_prefix} SageMaker training jobs and endpoint."
  assume_role_policy   = data.aws_iam_policy_document.sagemaker_assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_policy" "sagemaker_execution" {
  name   = "${var.name_prefix}-sagemaker-execution"
  policy = data.aws_iam_policy_document.sagemaker_execution.json
  tags   = var.tags
}

resource "aws_iam_role_policy_attachment" "sagemaker_execution" {
  role       = aws_iam_role.sagemaker_execution.name
  policy_arn = aws_iam_policy.sagemaker_execution.arn
}

################################################################################
# Lambda role
################################################################################

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "LambdaAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "lambda_tracing" {
  # The X-Ray write actions have no resource type; AWS only allows Resource "*".
  statement {
    sid       = "WriteXRayTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

data "aws_iam_policy_document" "lambda" {
  source_policy_documents = var.lambda_tracing_enabled ? [data.aws_iam_policy_document.lambda_tracing.json] : []

  statement {
    sid       = "InvokeTheEndpoint"
    actions   = ["sagemaker:InvokeEndpoint"]
    resources = [local.endpoint_arn]
  }

  # Terraform creates the log group (with retention), so the function needs no CreateLogGroup.
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.lambda_log_group_arn}:log-stream:*"]
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name_prefix}-inference-lambda"
  description        = "Runs the ${var.name_prefix} inference Lambda in front of the endpoint."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

resource "aws_iam_policy" "lambda" {
  name   = "${var.name_prefix}-inference-lambda"
  policy = data.aws_iam_policy_document.lambda.json
  tags   = var.tags
}

resource "aws_iam_role_policy_attachment" "lambda" {
  role       = aws_iam_role.lambda.name
  policy_arn = aws_iam_policy.lambda.arn
}

################################################################################
# EC2 training instance profile
################################################################################

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "Ec2AssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "training_instance" {
  source_policy_documents = [
    data.aws_iam_policy_document.s3_training.json,
    data.aws_iam_policy_document.kms_use.json,
  ]

  # Session Manager instead of SSH: the agent registers itself and opens its channels.
  # These ssmmessages/ec2messages actions have no resource type; AWS only allows Resource "*".
  statement {
    sid = "SessionManagerChannels"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
      "ec2messages:AcknowledgeMessage",
      "ec2messages:DeleteMessage",
      "ec2messages:FailMessage",
      "ec2messages:GetEndpoint",
      "ec2messages:GetMessages",
      "ec2messages:SendReply",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "SessionManagerRegistration"
    actions   = ["ssm:UpdateInstanceInformation"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]
  }
}

resource "aws_iam_role" "training_instance" {
  count = var.create_training_instance_profile ? 1 : 0

  name               = "${var.name_prefix}-training-instance"
  description        = "Lets the ${var.name_prefix} EC2 training instance read data and write model artifacts."
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = var.tags
}

resource "aws_iam_policy" "training_instance" {
  count = var.create_training_instance_profile ? 1 : 0

  name   = "${var.name_prefix}-training-instance"
  policy = data.aws_iam_policy_document.training_instance.json
  tags   = var.tags
}

resource "aws_iam_role_policy_attachment" "training_instance" {
  count = var.create_training_instance_profile ? 1 : 0

  role       = aws_iam_role.training_instance[0].name
  policy_arn = aws_iam_policy.training_instance[0].arn
}

resource "aws_iam_instance_profile" "training_instance" {
  count = var.create_training_instance_profile ? 1 : 0

  name = "${var.name_prefix}-training-instance"
  role = aws_iam_role.training_instance[0].name
  tags = var.tags
}

################################################################################
# Operator policy (whoever runs the pipeline)
################################################################################

data "aws_iam_policy_document" "operator" {
  statement {
    sid = "ManageProjectJobsAndModels"
    actions = [
      "sagemaker:CreateTrainingJob",
      "sagemaker:DescribeTrainingJob",
      "sagemaker:StopTrainingJob",
      "sagemaker:CreateHyperParameterTuningJob",
      "sagemaker:DescribeHyperParameterTuningJob",
      "sagemaker:StopHyperParameterTuningJob",
      "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
      "sagemaker:CreateModel",
      "sagemaker:DescribeModel",
      "sagemaker:AddTags",
    ]
    resources = [
      "${local.arn_prefix}:training-job/${var.name_prefix}*",
      "${local.arn_prefix}:hyper-parameter-tuning-job/${var.name_prefix}*",
      "${local.arn_prefix}:model/${var.name_prefix}*",
    ]
  }

  statement {
    sid       = "PassExecutionRoleToSageMaker"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker_execution.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  # The pipeline uploads the dataset and checks that the trained artifact landed.
  statement {
    sid       = "UploadDataReadArtifacts"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${var.bucket_arn}/data/*"]
  }

  statement {
    sid       = "ReadJobArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/jobs/*"]
  }

  statement {
    sid       = "ListBucketByPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["data/*", "jobs/*"]
    }
  }

  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${var.name_prefix}-operator"
  description = "Runs the ${var.name_prefix} pipeline: project-prefixed SageMaker jobs and models, data upload."
  policy      = data.aws_iam_policy_document.operator.json
  tags        = var.tags
}
