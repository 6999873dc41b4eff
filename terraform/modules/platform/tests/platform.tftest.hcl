# The shared mocks: terraform/testing/aws/aws.tfmock.hcl.
mock_provider "aws" {
  source = "../../testing/aws"
}

variables {
  name_prefix     = "breedops-test"
  lambda_zip_path = "../inference_lambda/tests/fixtures/stand_in_lambda.zip"
}

run "base_only_without_artifact" {
  command = plan

  assert {
    condition     = length(module.endpoint) == 0 && length(module.inference_lambda) == 0
    error_message = "Without a model artifact there must be no endpoint and no Lambda."
  }

  assert {
    condition     = output.endpoint_name == null && output.lambda_alias_name == null && output.lambda_function_name == "breedops-test-inference"
    error_message = "Without an artifact endpoint_name and lambda_alias_name must be null; lambda_function_name is always known."
  }
}

run "serving_with_artifact" {
  command = plan

  variables {
    model_artifact = {
      model_data_url    = "s3://breedops-test-data-123456789012/jobs/train-001/output/model.tar.gz"
      training_job_name = "train-001"
      training_job_arn  = "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-001"
    }
    endpoint = {
      autoscaling = { max_capacity = 3 }
    }
    inference_lambda = {
      top_k       = 3
      concurrency = { reserved = 4, provisioned = 1 }
    }
  }

  assert {
    condition     = length(module.endpoint) == 1 && length(module.inference_lambda) == 1
    error_message = "With a model artifact the endpoint and the Lambda must be planned."
  }

  assert {
    condition     = output.endpoint_name == "breedops-test-endpoint"
    error_message = "The endpoint must be named <prefix>-endpoint, the name the Lambda role may invoke."
  }
}

run "reject_artifact_without_tarball" {
  command = plan

  variables {
    model_artifact = {
      model_data_url    = "s3://breedops-test-data-123456789012/jobs/train-001/output/model.pth"
      training_job_name = "train-001"
      training_job_arn  = "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-001"
    }
  }

  expect_failures = [var.model_artifact]
}

run "reject_artifact_with_bad_job_arn" {
  command = plan

  variables {
    model_artifact = {
      model_data_url    = "s3://breedops-test-data-123456789012/jobs/train-001/output/model.tar.gz"
      training_job_name = "train-001"
      training_job_arn  = "train-001"
    }
  }

  expect_failures = [var.model_artifact]
}

run "reject_uppercase_name_prefix" {
  command = plan
  variables {
    name_prefix = "Breedops"
  }
  expect_failures = [var.name_prefix]
}

# The settings pass through untyped; an explicit null must reach the inference_lambda module as
# null (no reservation, the only choice on a new account), where a typed copy's optional default
# once replaced it.
run "reserved_concurrency_null_is_no_reservation" {
  command = plan

  variables {
    model_artifact = {
      model_data_url    = "s3://breedops-test-data-123456789012/jobs/train-001/output/model.tar.gz"
      training_job_name = "train-001"
      training_job_arn  = "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-001"
    }
    inference_lambda = {
      concurrency = { reserved = null, provisioned = 1 }
    }
  }

  assert {
    condition     = module.inference_lambda[0].concurrency.reserved == null && module.inference_lambda[0].concurrency.provisioned == 1
    error_message = "An explicit null reserved concurrency must reach the inference_lambda module as null."
  }
}

run "omitted_settings_get_the_modules_defaults" {
  command = plan

  variables {
    model_artifact = {
      model_data_url    = "s3://breedops-test-data-123456789012/jobs/train-001/output/model.tar.gz"
      training_job_name = "train-001"
      training_job_arn  = "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-001"
    }
  }

  assert {
    condition     = module.inference_lambda[0].concurrency.reserved == null && module.inference_lambda[0].concurrency.provisioned == 2
    error_message = "The platform module reserves nothing by default, as the inference_lambda module; the env roots choose 10."
  }

  assert {
    condition     = module.endpoint[0].autoscaling_resource_id == "endpoint/breedops-test-endpoint/variant/primary"
    error_message = "Without endpoint settings the endpoint module's default variant must serve."
  }
}
