locals {
  name_prefix          = "${var.project}-${var.environment}"
  endpoint_name        = "${local.name_prefix}-endpoint"
  lambda_function_name = "${local.name_prefix}-inference"
  # Serving (endpoint, autoscaling, Lambda) exists only once training has produced an artifact.
  serve = var.model_artifact != null
  tags = {
    Project     = var.project
    Environment = var.environment
    ManagedBy   = "terraform"
  }
}

module "data_bucket" {
  source = "../../modules/data_bucket"

  name_prefix   = local.name_prefix
  force_destroy = var.force_destroy_bucket
  # The emulator answers plain HTTP on 127.0.0.1 and evaluates bucket policies, so the TLS-only
  # policy would deny every object request here; the aws root keeps it.
  deny_insecure_transport = false
}

module "iam" {
  source = "../../modules/iam"

  name_prefix                      = local.name_prefix
  bucket_arn                       = module.data_bucket.bucket_arn
  kms_key_arn                      = module.data_bucket.kms_key_arn
  endpoint_name                    = local.endpoint_name
  lambda_function_name             = local.lambda_function_name
  create_training_instance_profile = var.create_training_instance
}

module "training_instance" {
  source = "../../modules/training_instance"

  create                = var.create_training_instance
  name_prefix           = local.name_prefix
  instance_profile_name = module.iam.training_instance_profile_name
  kms_key_arn           = module.data_bucket.kms_key_arn
  training = {
    bucket_name = module.data_bucket.bucket_name
  }
}

module "endpoint" {
  source = "../../modules/endpoint"
  count  = local.serve ? 1 : 0

  name_prefix        = local.name_prefix
  model_data_url     = var.model_artifact.model_data_url
  model_version      = var.model_artifact.training_job_name
  image_uri          = coalesce(var.endpoint_image_uri, "763104351884.dkr.ecr.${var.region}.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker")
  execution_role_arn = module.iam.sagemaker_execution_role_arn
  kms_key_arn        = module.data_bucket.kms_key_arn
  variant            = var.endpoint_variant
  autoscaling        = var.endpoint_autoscaling
}

module "inference_lambda" {
  source = "../../modules/inference_lambda"
  count  = local.serve ? 1 : 0

  function_name = local.lambda_function_name
  zip_path      = var.lambda_zip_path
  role_arn      = module.iam.lambda_role_arn
  endpoint_name = module.endpoint[0].endpoint_name
  top_k         = var.top_k
  concurrency   = var.lambda_concurrency
}
