data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  arn_prefix = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"
  s3_service = "s3.${local.region}.amazonaws.com"
  # Object ARNs under each prefix of the bucket layout (the data_bucket module's prefixes output).
  objects    = { for name, prefix in var.prefixes : name => "${var.bucket_arn}/${prefix}*" }
  code_probe = trimsuffix(var.prefixes.code, "/")
  # Jobs the operator may manage; a tuning job's trials are named <tuning-job>-NNN-<hash>.
  job_name_pattern = "${var.name_prefix}-*"
  training_log_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/TrainingJobs"

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

# The roles reach the bucket key only through S3 (SSE-KMS reads and writes), never directly.
data "aws_iam_policy_document" "kms_use" {
  statement {
    sid       = "UseBucketKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_service]
    }
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
      values   = ["${var.prefixes.data}*", "${var.prefixes.jobs}*", "${var.prefixes.checkpoints}*"]
    }
  }

  statement {
    sid       = "ReadDataAndCheckpoints"
    actions   = ["s3:GetObject"]
    resources = [local.objects.data, local.objects.checkpoints]
  }

  statement {
    sid       = "WriteJobsAndCheckpoints"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [local.objects.jobs, local.objects.checkpoints]
  }
}

################################################################################
# SageMaker execution role (training and hosting)
################################################################################

data "aws_iam_policy_document" "sagemaker_assume" {
  # SageMaker assumes the role only for this account's own jobs and endpoints (confused deputy).
  statement {
    sid     = "SageMakerAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["${local.arn_prefix}:*"]
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
    resources = [local.objects.jobs]
  }

  # A job downloads the source the operator staged (the SDK's sourcedir and drivers channels).
  statement {
    sid       = "ReadJobSource"
    actions   = ["s3:GetObject"]
    resources = [local.objects.code]
  }

  statement {
    sid       = "ListJobSource"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.prefixes.code}*"]
    }
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

  # The user data downloads the training source (code/breedops.tar.gz) by its key: no listing.
  statement {
    sid       = "ReadTrainingSource"
    actions   = ["s3:GetObject"]
    resources = [local.objects.code]
  }

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
  # Each statement is a call the pipeline makes (src/breedops/pipeline, jobs/sagemaker_backend).
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
      "sagemaker:AddTags",
    ]
    resources = [
      "${local.arn_prefix}:training-job/${local.job_name_pattern}",
      "${local.arn_prefix}:hyper-parameter-tuning-job/${local.job_name_pattern}",
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

  statement {
    sid       = "UploadData"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.objects.data]
  }

  # The SDK uploads each job's source (sourcedir, drivers) and the EC2 path's bundle here.
  statement {
    sid       = "StageJobSource"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.objects.code]
  }

  # Plots and metrics come back in the job's output.tar.gz; the smoke test reads nothing else.
  statement {
    sid       = "ReadJobArtifacts"
    actions   = ["s3:GetObject"]
    resources = [local.objects.jobs]
  }

  statement {
    sid       = "ListBucketByPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      # The SDK probes the staging prefix itself (`Prefix=code`) before it uploads.
      values = ["${var.prefixes.data}*", "${var.prefixes.jobs}*", local.code_probe, "${var.prefixes.code}*"]
    }
  }

  statement {
    sid       = "UseBucketKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_service]
    }
  }

  # Waiting on a job streams its log, and the tune stage saves the best trial's beside the plots
  # (DescribeLogStreams, GetLogEvents); the summary prints a FilterLogEvents command to read it.
  # Only the project's own jobs' streams.
  statement {
    sid       = "ReadTrainingJobLogs"
    actions   = ["logs:DescribeLogStreams", "logs:FilterLogEvents"]
    resources = [local.training_log_arn, "${local.training_log_arn}:*"]
  }

  statement {
    sid       = "ReadTrainingJobLogStreams"
    actions   = ["logs:GetLogEvents"]
    resources = ["${local.training_log_arn}:log-stream:${local.job_name_pattern}"]
  }

  # The smoke test invokes the deployed function through its alias.
  statement {
    sid       = "InvokeTheFunctionAlias"
    actions   = ["lambda:InvokeFunction"]
    resources = ["arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${var.lambda_function_name}:${var.lambda_alias}"]
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${var.name_prefix}-operator"
  description = "Runs the ${var.name_prefix} pipeline: project-prefixed SageMaker jobs, data upload, the smoke test."
  policy      = data.aws_iam_policy_document.operator.json
  tags        = var.tags
}

# Assumed by the pipeline for every stage that is not Terraform (locally always; on AWS when
# operator_principals names who may run the pipeline).
data "aws_iam_policy_document" "operator_assume" {
  statement {
    sid     = "PipelineRunnersAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.operator_principals
    }
  }
}

resource "aws_iam_role" "operator" {
  count = length(var.operator_principals) > 0 ? 1 : 0

  name                 = "${var.name_prefix}-operator"
  description          = "Runs the ${var.name_prefix} pipeline stages that are not Terraform."
  assume_role_policy   = data.aws_iam_policy_document.operator_assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "operator" {
  count = length(var.operator_principals) > 0 ? 1 : 0

  role       = aws_iam_role.operator[0].name
  policy_arn = aws_iam_policy.operator.arn
}
