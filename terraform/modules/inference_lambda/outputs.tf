output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "version" {
  description = "The published version the live alias points to."
  value       = aws_lambda_function.this.version
}

output "alias_name" {
  description = "Name of the alias that serves traffic."
  value       = aws_lambda_alias.live.name
}

output "alias_arn" {
  description = "ARN of the alias that serves traffic; invoke this one."
  value       = aws_lambda_alias.live.arn
}

output "log_group_name" {
  description = "The function's log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "concurrency" {
  description = "The concurrency in effect: reserved (null: no reservation) and provisioned on the alias."
  value       = var.concurrency
}
