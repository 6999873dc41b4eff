# The shared mocks: terraform/testing/aws/aws.tfmock.hcl.
mock_provider "aws" {
  source = "../../testing/aws"
}

variables {
  function_name = "breedops-test-inference"
  zip_path      = "tests/fixtures/stand_in_lambda.zip"
  role_arn      = "arn:aws:iam::123456789012:role/breedops-test-inference-lambda"
  endpoint_name = "breedops-test-endpoint"
  alias_name    = "live"
  concurrency = {
    reserved    = 8
    provisioned = 3
  }
}

run "concurrency_and_alias" {
  command = apply

  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 8
    error_message = "The function's reserved concurrency must come from concurrency.reserved."
  }

  assert {
    condition     = aws_lambda_provisioned_concurrency_config.live[0].provisioned_concurrent_executions == 3 && aws_lambda_provisioned_concurrency_config.live[0].qualifier == "live"
    error_message = "Provisioned concurrency must be set on the live alias from concurrency.provisioned."
  }

  assert {
    condition     = aws_lambda_function.this.publish && aws_lambda_alias.live.function_version == "1"
    error_message = "The function must publish a version and the live alias must point at it."
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables == tomap({ ENDPOINT_NAME = "breedops-test-endpoint", TOP_K = "5", LOG_LEVEL = "INFO" })
    error_message = "The environment must carry ENDPOINT_NAME, TOP_K and LOG_LEVEL."
  }

  assert {
    condition     = aws_cloudwatch_log_group.this.name == "/aws/lambda/breedops-test-inference" && aws_cloudwatch_log_group.this.retention_in_days == 365
    error_message = "The function's log group must be /aws/lambda/<name> with a retention."
  }

  assert {
    condition     = aws_lambda_function.this.tracing_config[0].mode == "PassThrough"
    error_message = "Tracing must be off unless tracing_enabled."
  }
}

run "no_provisioned_concurrency_when_zero" {
  command = plan

  variables {
    concurrency     = { reserved = 2, provisioned = 0 }
    tracing_enabled = true
  }

  assert {
    condition     = length(aws_lambda_provisioned_concurrency_config.live) == 0
    error_message = "Provisioned concurrency 0 must create no provisioned concurrency configuration."
  }

  assert {
    condition     = aws_lambda_function.this.tracing_config[0].mode == "Active"
    error_message = "tracing_enabled must turn on active tracing."
  }
}

run "no_reservation_when_reserved_is_null" {
  command = plan

  variables {
    concurrency = { reserved = null, provisioned = 2 }
  }

  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == -1
    error_message = "A null concurrency.reserved must leave the function unreserved (-1)."
  }

  assert {
    condition     = aws_lambda_provisioned_concurrency_config.live[0].provisioned_concurrent_executions == 2
    error_message = "Provisioned concurrency needs no reservation."
  }
}

run "no_reservation_by_default" {
  command = plan

  variables {
    concurrency = {}
  }

  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == -1
    error_message = "Without concurrency.reserved the function must be unreserved (a new account cannot reserve any)."
  }
}

run "reject_provisioned_above_reserved" {
  command = plan
  variables {
    concurrency = { reserved = 2, provisioned = 3 }
  }
  expect_failures = [var.concurrency]
}

run "reject_zero_reserved" {
  command = plan
  variables {
    concurrency = { reserved = 0, provisioned = 0 }
  }
  expect_failures = [var.concurrency]
}

run "reject_fractional_reserved" {
  command = plan
  variables {
    concurrency = { reserved = 2.5, provisioned = 0 }
  }
  expect_failures = [var.concurrency]
}

run "reject_top_k_out_of_range" {
  command = plan
  variables {
    top_k = 0
  }
  expect_failures = [var.top_k]
}

run "reject_unknown_log_level" {
  command = plan
  variables {
    log_level = "TRACE"
  }
  expect_failures = [var.log_level]
}

run "reject_old_runtime" {
  command = plan
  variables {
    runtime = "python3.9"
  }
  expect_failures = [var.runtime]
}

run "reject_memory_out_of_range" {
  command = plan
  variables {
    memory_size_mb = 64
  }
  expect_failures = [var.memory_size_mb]
}

run "reject_timeout_above_endpoint_limit" {
  command = plan
  variables {
    timeout_seconds = 120
  }
  expect_failures = [var.timeout_seconds]
}

run "reject_unsupported_retention" {
  command = plan
  variables {
    log_retention_days = 10
  }
  expect_failures = [var.log_retention_days]
}

run "reject_zip_path_that_is_not_a_zip" {
  command = plan
  variables {
    zip_path = "tests/fixtures/stand_in_lambda.tar"
  }
  expect_failures = [var.zip_path]
}

run "reject_invalid_function_name" {
  command = plan
  variables {
    function_name = "bad name"
  }
  expect_failures = [var.function_name]
}

run "reject_role_that_is_not_a_role" {
  command = plan
  variables {
    role_arn = "arn:aws:iam::123456789012:user/x"
  }
  expect_failures = [var.role_arn]
}
