locals {
  tags = {
    Project     = var.project
    Environment = var.environment
    ManagedBy   = "terraform"
  }
  # The Lambda reserves 10 executions unless concurrency.reserved is given, and none when it is
  # null: AWS refuses any reservation on a new account (terraform/modules/inference_lambda).
  inference_lambda = merge(var.inference_lambda, {
    concurrency = merge({ reserved = 10 }, try(var.inference_lambda.concurrency, {}))
  })
}

module "platform" {
  source = "../../modules/platform"

  name_prefix              = "${var.project}-${var.environment}"
  model_artifact           = var.model_artifact
  lambda_zip_path          = var.lambda_zip_path
  force_destroy_bucket     = var.force_destroy_bucket
  create_training_instance = var.create_training_instance
  endpoint                 = var.endpoint
  inference_lambda         = local.inference_lambda
  operator_principals      = var.operator_principals
}
