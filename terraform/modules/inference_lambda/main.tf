resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:The function only calls the SageMaker Runtime API; a VPC would add a NAT or endpoint for no isolation gain.
  #checkov:skip=CKV_AWS_116:Invocations are synchronous (API Gateway or direct); a dead-letter queue applies to asynchronous ones.
  #checkov:skip=CKV_AWS_173:The environment holds no secret (endpoint name, top-k, log level); the default AWS-managed key encrypts it.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile in a real account; the zip is built reproducibly and hashed instead.
  function_name                  = var.function_name
  role                           = var.role_arn
  runtime                        = var.runtime
  handler                        = "breedops_lambda.handler.lambda_handler"
  filename                       = var.zip_path
  source_code_hash               = filebase64sha256(var.zip_path)
  memory_size                    = var.memory_size_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.concurrency.reserved == null ? -1 : var.concurrency.reserved # -1: no reservation
  # A new version per code or configuration change, so the alias can move (and roll back).
  publish = true

  environment {
    variables = {
      ENDPOINT_NAME = var.endpoint_name
      TOP_K         = tostring(var.top_k)
      LOG_LEVEL     = var.log_level
    }
  }

  tracing_config {
    mode = var.tracing_enabled ? "Active" : "PassThrough"
  }

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.this]
}

resource "aws_lambda_alias" "live" {
  name             = var.alias_name
  description      = "The version that serves traffic."
  function_name    = aws_lambda_function.this.function_name
  function_version = aws_lambda_function.this.version
}

resource "aws_lambda_provisioned_concurrency_config" "live" {
  count = var.concurrency.provisioned > 0 ? 1 : 0

  function_name                     = aws_lambda_alias.live.function_name
  qualifier                         = aws_lambda_alias.live.name
  provisioned_concurrent_executions = var.concurrency.provisioned
}
