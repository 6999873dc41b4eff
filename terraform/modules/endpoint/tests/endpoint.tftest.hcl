# The shared mocks: terraform/testing/aws/aws.tfmock.hcl.
mock_provider "aws" {
  source = "../../testing/aws"
}

variables {
  name_prefix        = "breedops-test"
  endpoint_name      = "breedops-test-endpoint"
  model_data_url     = "s3://breedops-test-data-123456789012/jobs/train-001/output/model.tar.gz"
  model_version      = "train-001"
  execution_role_arn = "arn:aws:iam::123456789012:role/breedops-test-sagemaker-execution"
  kms_key_arn        = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  autoscaling = {
    min_capacity                    = 2
    max_capacity                    = 6
    target_invocations_per_instance = 150
    scale_in_cooldown_seconds       = 600
    scale_out_cooldown_seconds      = 30
  }
}

run "autoscaling_targets_the_variant" {
  command = plan

  assert {
    condition     = aws_appautoscaling_target.this.resource_id == "endpoint/breedops-test-endpoint/variant/primary"
    error_message = "The scalable target must be the endpoint's primary variant."
  }

  assert {
    condition     = aws_appautoscaling_target.this.scalable_dimension == "sagemaker:variant:DesiredInstanceCount" && aws_appautoscaling_target.this.service_namespace == "sagemaker"
    error_message = "The scalable dimension must be sagemaker:variant:DesiredInstanceCount."
  }

  assert {
    condition     = aws_appautoscaling_target.this.min_capacity == 2 && aws_appautoscaling_target.this.max_capacity == 6
    error_message = "The capacity bounds must come from the autoscaling variable."
  }

  assert {
    condition     = aws_appautoscaling_policy.invocations.target_tracking_scaling_policy_configuration[0].predefined_metric_specification[0].predefined_metric_type == "SageMakerVariantInvocationsPerInstance"
    error_message = "The policy must track SageMakerVariantInvocationsPerInstance."
  }

  assert {
    condition = (
      aws_appautoscaling_policy.invocations.policy_type == "TargetTrackingScaling" &&
      aws_appautoscaling_policy.invocations.target_tracking_scaling_policy_configuration[0].target_value == 150 &&
      aws_appautoscaling_policy.invocations.target_tracking_scaling_policy_configuration[0].scale_in_cooldown == 600 &&
      aws_appautoscaling_policy.invocations.target_tracking_scaling_policy_configuration[0].scale_out_cooldown == 30
    )
    error_message = "The target value and both cooldowns must come from the autoscaling variable."
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.kms_key_arn == var.kms_key_arn && aws_sagemaker_endpoint_configuration.this.production_variants[0].instance_type == "ml.m5.large"
    error_message = "The endpoint configuration must use the KMS key and the variant's instance type."
  }

  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].model_data_url == var.model_data_url
    error_message = "The model must serve the artifact's model data."
  }
}

# The platform module passes unset settings as null: they must mean the defaults.
run "null_settings_are_the_defaults" {
  command = plan

  variables {
    variant     = null
    autoscaling = null
  }

  assert {
    condition = (
      aws_sagemaker_endpoint_configuration.this.production_variants[0].variant_name == "primary" &&
      aws_sagemaker_endpoint_configuration.this.production_variants[0].instance_type == "ml.m5.large" &&
      aws_sagemaker_endpoint_configuration.this.production_variants[0].initial_instance_count == 1 &&
      aws_appautoscaling_target.this.min_capacity == 1 && aws_appautoscaling_target.this.max_capacity == 4
    )
    error_message = "A null variant or autoscaling must take the module's defaults."
  }

  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].image == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker"
    error_message = "Without image_uri the model must run the PyTorch inference image of the provider's region."
  }

  assert {
    condition     = aws_sagemaker_endpoint.this.name == "breedops-test-endpoint"
    error_message = "The endpoint must take the name it is given, the one IAM was scoped to."
  }
}

run "config_name_changes_with_model_data" {
  command = plan

  variables {
    model_data_url = "s3://breedops-test-data-123456789012/jobs/train-002/output/model.tar.gz"
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.name != run.autoscaling_targets_the_variant.endpoint_configuration_name
    error_message = "A new model artifact must produce a new endpoint configuration name, so the update rolls over."
  }

  assert {
    condition     = aws_sagemaker_model.this.name != run.autoscaling_targets_the_variant.model_name
    error_message = "A new model artifact must produce a new model name."
  }
}

run "reject_min_capacity_above_max" {
  command = plan
  variables {
    autoscaling = { min_capacity = 5, max_capacity = 2 }
  }
  expect_failures = [var.autoscaling]
}

run "reject_non_positive_target" {
  command = plan
  variables {
    autoscaling = { target_invocations_per_instance = 0 }
  }
  expect_failures = [var.autoscaling]
}

run "reject_negative_cooldown" {
  command = plan
  variables {
    autoscaling = { scale_in_cooldown_seconds = -1 }
  }
  expect_failures = [var.autoscaling]
}

run "reject_non_sagemaker_instance_type" {
  command = plan
  variables {
    variant = { instance_type = "m5.large" }
  }
  expect_failures = [var.variant]
}

run "reject_zero_instances" {
  command = plan
  variables {
    variant = { initial_instance_count = 0 }
  }
  expect_failures = [var.variant]
}

run "reject_invalid_variant_name" {
  command = plan
  variables {
    variant = { name = "bad_name" }
  }
  expect_failures = [var.variant]
}

run "reject_model_data_that_is_not_a_tarball" {
  command = plan
  variables {
    model_data_url = "https://example.com/model.pth"
  }
  expect_failures = [var.model_data_url]
}

run "reject_image_without_tag" {
  command = plan
  variables {
    image_uri = "pytorch-inference"
  }
  expect_failures = [var.image_uri]
}

run "reject_role_that_is_not_a_role" {
  command = plan
  variables {
    execution_role_arn = "arn:aws:iam::123456789012:user/x"
  }
  expect_failures = [var.execution_role_arn]
}

run "reject_uppercase_name_prefix" {
  command = plan
  variables {
    name_prefix = "Breedops"
  }
  expect_failures = [var.name_prefix]
}
