locals {
  # Every name another module must know before its resource exists is built here alone and passed
  # down: IAM scopes the Lambda role to the endpoint and the operator to the function's alias.
  endpoint_name        = "${var.name_prefix}-endpoint"
  lambda_function_name = "${var.name_prefix}-inference"
  lambda_alias_name    = "live"
  # Serving (endpoint, autoscaling, Lambda) exists only once training has produced an artifact.
  serve = var.model_artifact != null
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
  prefixes                         = module.data_bucket.prefixes
  kms_key_arn                      = module.data_bucket.kms_key_arn
  endpoint_name                    = local.endpoint_name
  lambda_function_name             = local.lambda_function_name
  lambda_alias                     = local.lambda_alias_name
  lambda_tracing_enabled           = try(var.inference_lambda.tracing_enabled, null)
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

# The settings pass through as given (null where unset): the endpoint and inference_lambda
# modules alone type, default and validate them.
module "endpoint" {
  source = "../endpoint"
  count  = local.serve ? 1 : 0

  name_prefix        = var.name_prefix
  endpoint_name      = local.endpoint_name
  model_data_url     = var.model_artifact.model_data_url
  model_version      = var.model_artifact.training_job_name
  image_uri          = try(var.endpoint.image_uri, null)
  execution_role_arn = module.iam.sagemaker_execution_role_arn
  kms_key_arn        = module.data_bucket.kms_key_arn
  variant            = try(var.endpoint.variant, null)
  autoscaling        = try(var.endpoint.autoscaling, null)
}

module "inference_lambda" {
  source = "../inference_lambda"
  count  = local.serve ? 1 : 0

  function_name   = local.lambda_function_name
  alias_name      = local.lambda_alias_name
  zip_path        = var.lambda_zip_path
  role_arn        = module.iam.lambda_role_arn
  endpoint_name   = module.endpoint[0].endpoint_name
  top_k           = try(var.inference_lambda.top_k, null)
  concurrency     = try(var.inference_lambda.concurrency, null)
  tracing_enabled = try(var.inference_lambda.tracing_enabled, null)
}
