output "sagemaker_execution_role_arn" {
  description = "ARN of the SageMaker execution role (training and hosting)."
  value       = aws_iam_role.sagemaker_execution.arn
}

output "sagemaker_execution_policy_json" {
  description = "The execution role's policy document, for review and tests."
  value       = data.aws_iam_policy_document.sagemaker_execution.json
}

output "lambda_role_arn" {
  description = "ARN of the inference Lambda's role."
  value       = aws_iam_role.lambda.arn
}

output "lambda_policy_json" {
  description = "The Lambda role's policy document."
  value       = data.aws_iam_policy_document.lambda.json
}

output "training_instance_profile_name" {
  description = "Name of the EC2 training instance profile (null unless create_training_instance_profile)."
  value       = try(aws_iam_instance_profile.training_instance[0].name, null)
}

output "training_instance_policy_json" {
  description = "The training instance role's policy document."
  value       = data.aws_iam_policy_document.training_instance.json
}

output "operator_policy_arn" {
  description = "ARN of the operator policy; attach it to whoever runs the pipeline."
  value       = aws_iam_policy.operator.arn
}

output "operator_policy_json" {
  description = "The operator policy document."
  value       = data.aws_iam_policy_document.operator.json
}

output "operator_role_arn" {
  description = "ARN of the operator role the pipeline assumes (null when operator_principals is empty)."
  value       = try(aws_iam_role.operator[0].arn, null)
}
