# The outputs the Python side reads (contract 7), passed through from the platform module.
output "name_prefix" {
  description = "Prefix of every resource name."
  value       = module.platform.name_prefix
}

output "bucket_name" {
  description = "Name of the data bucket."
  value       = module.platform.bucket_name
}

output "kms_key_arn" {
  description = "ARN of the bucket's customer-managed key."
  value       = module.platform.kms_key_arn
}

output "sagemaker_execution_role_arn" {
  description = "ARN of the SageMaker execution role."
  value       = module.platform.sagemaker_execution_role_arn
}

output "operator_policy_arn" {
  description = "ARN of the operator policy."
  value       = module.platform.operator_policy_arn
}

output "operator_role_arn" {
  description = "ARN of the operator role the pipeline assumes (null: the pipeline runs as the caller)."
  value       = module.platform.operator_role_arn
}

output "code_prefix" {
  description = "Bucket prefix where the pipeline stages job source."
  value       = module.platform.code_prefix
}

output "endpoint_name" {
  description = "Name of the SageMaker endpoint (null until an artifact exists)."
  value       = module.platform.endpoint_name
}

output "lambda_function_name" {
  description = "Name of the inference Lambda function (created once an artifact exists)."
  value       = module.platform.lambda_function_name
}

output "lambda_alias_name" {
  description = "Alias of the Lambda that serves traffic (null until an artifact exists)."
  value       = module.platform.lambda_alias_name
}

output "model_artifact" {
  description = "The deployed artifact (null until one exists)."
  value       = var.model_artifact
}

output "training_instance_id" {
  description = "ID of the EC2 training instance (null unless create_training_instance)."
  value       = module.platform.training_instance_id
}
