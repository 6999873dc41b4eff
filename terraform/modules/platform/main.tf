data "aws_region" "current" {}

locals {
  endpoint_name        = "${var.name_prefix}-endpoint"
  lambda_function_name = "${var.name_prefix}-inference"
  # Serving (endpoint, autoscaling, Lambda) exists only once training has produced an artifact.
  serve = var.model_artifact != null
  # The AWS PyTorch inference container of the region (Deep Learning Containers account).
  default_image_uri = "763104351884.dkr.ecr.${data.aws_region.current.name}.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker"
}

module "data_bucket" {
  source = "../data_bucket"

  name_prefix             = var.name_prefix
  force_destroy           = var.force_destroy_bucket
  deny_insecure_transport = var.deny_insecure_transport
}

module "iam" {
  source = "../iam"

  name_prefix                      = var.name_prefix
  bucket_arn                       = module.data_bucket.bucket_arn
  kms_key_arn                      = module.data_bucket.kms_key_arn
  endpoint_name                    = local.endpoint_name
  lambda_function_name             = local.lambda_function_name
  lambda_tracing_enabled           = var.inference_lambda.tracing_enabled
  create_training_instance_profile = var.create_training_instance
  operator_principals              = var.operator_principals
}

module "training_instance" {
  source = "../training_instance"

  create                = var.create_training_instance
  name_prefix           = var.name_prefix
  instance_profile_name = module.iam.training_instance_profile_name
  kms_key_arn           = module.data_bucket.kms_key_arn
  training = {
    bucket_name = module.data_bucket.bucket_name
  }
}

module "endpoint" {
  source = "../endpoint"
  count  = local.serve ? 1 : 0

  name_prefix        = var.name_prefix
  model_data_url     = var.model_artifact.model_data_url
  model_version      = var.model_artifact.training_job_name
  image_uri          = coalesce(var.endpoint.image_uri, local.default_image_uri)
  execution_role_arn = module.iam.sagemaker_execution_role_arn
  kms_key_arn        = module.data_bucket.kms_key_arn
  variant            = var.endpoint.variant
  autoscaling        = var.endpoint.autoscaling
}

module "inference_lambda" {
  source = "../inference_lambda"
  count  = local.serve ? 1 : 0

  function_name   = local.lambda_function_name
  zip_path        = var.lambda_zip_path
  role_arn        = module.iam.lambda_role_arn
  endpoint_name   = module.endpoint[0].endpoint_name
  top_k           = var.inference_lambda.top_k
  concurrency     = var.inference_lambda.concurrency
  tracing_enabled = var.inference_lambda.tracing_enabled
}
