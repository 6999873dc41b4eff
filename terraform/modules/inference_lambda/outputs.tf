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
  description = "Name of the alias that serves traffic (live)."
  value       = aws_lambda_alias.live.name
}

output "alias_arn" {
  description = "ARN of the live alias; invoke this one."
  value       = aws_lambda_alias.live.arn
}

output "log_group_name" {
  description = "The function's log group."
  value       = aws_cloudwatch_log_group.this.name
}
