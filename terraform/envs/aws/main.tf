locals {
  tags = {
    Project     = var.project
    Environment = var.environment
    ManagedBy   = "terraform"
  }
}

module "platform" {
  source = "../../modules/platform"

  name_prefix              = "${var.project}-${var.environment}"
  model_artifact           = var.model_artifact
  lambda_zip_path          = var.lambda_zip_path
  force_destroy_bucket     = var.force_destroy_bucket
  create_training_instance = var.create_training_instance
  endpoint                 = var.endpoint
  inference_lambda         = var.inference_lambda
  operator_principals      = var.operator_principals
}
