output "name_prefix" {
  description = "Prefix of every resource name."
  value       = var.name_prefix
}

output "bucket_name" {
  description = "Name of the data bucket."
  value       = module.data_bucket.bucket_name
}

output "kms_key_arn" {
  description = "ARN of the bucket's customer-managed key."
  value       = module.data_bucket.kms_key_arn
}

output "sagemaker_execution_role_arn" {
  description = "ARN of the SageMaker execution role."
  value       = module.iam.sagemaker_execution_role_arn
}

output "operator_policy_arn" {
  description = "ARN of the operator policy."
  value       = module.iam.operator_policy_arn
}

output "endpoint_name" {
  description = "Name of the SageMaker endpoint (null until an artifact exists)."
  value       = local.serve ? module.endpoint[0].endpoint_name : null
}

output "lambda_function_name" {
  description = "Name of the inference Lambda function (created once an artifact exists)."
  value       = local.lambda_function_name
}

output "lambda_alias_name" {
  description = "Alias of the Lambda that serves traffic (null until an artifact exists)."
  value       = local.serve ? module.inference_lambda[0].alias_name : null
}

output "training_instance_id" {
  description = "ID of the EC2 training instance (null unless create_training_instance)."
  value       = module.training_instance.instance_id
}

output "operator_role_arn" {
  description = "ARN of the operator role the pipeline assumes (null when no operator principals are given)."
  value       = module.iam.operator_role_arn
}

output "code_prefix" {
  description = "Bucket prefix where the pipeline stages job source."
  # Without the slash, as the SageMaker SDK's default_bucket_prefix takes it.
  value = trimsuffix(module.data_bucket.prefixes.code, "/")
}
