output "endpoint_name" {
  description = "Name of the SageMaker endpoint."
  value       = aws_sagemaker_endpoint.this.name
}

output "endpoint_arn" {
  description = "ARN of the SageMaker endpoint."
  value       = aws_sagemaker_endpoint.this.arn
}

output "model_name" {
  description = "Name of the SageMaker model (changes with the model data)."
  value       = aws_sagemaker_model.this.name
}

output "endpoint_configuration_name" {
  description = "Name of the endpoint configuration (changes with the model data and variant settings)."
  value       = aws_sagemaker_endpoint_configuration.this.name
}

output "autoscaling_resource_id" {
  description = "Application Auto Scaling resource id of the variant."
  value       = aws_appautoscaling_target.this.resource_id
}
