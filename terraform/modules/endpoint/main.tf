data "aws_region" "current" {}

locals {
  # The AWS PyTorch inference container of the region (Deep Learning Containers account).
  image_uri = coalesce(var.image_uri, "763104351884.dkr.ecr.${data.aws_region.current.name}.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker")
  # Model and endpoint configuration are immutable in SageMaker: a change must create new ones
  # under new names before the endpoint switches over, otherwise the update fails on the
  # endpoint still using the old configuration (terraform-provider-aws issues 40048 and 14337).
  revision = substr(sha1(jsonencode({
    model_data_url = var.model_data_url
    image_uri      = local.image_uri
    role           = var.execution_role_arn
    variant        = var.variant
    kms_key_arn    = var.kms_key_arn
  })), 0, 10)
  resource_id = "endpoint/${aws_sagemaker_endpoint.this.name}/variant/${var.variant.name}"
}

resource "aws_sagemaker_model" "this" {
  name               = "${var.name_prefix}-model-${local.revision}"
  execution_role_arn = var.execution_role_arn
  # inference.py needs only what the image and the model.tar.gz hold, so no network at all.
  enable_network_isolation = true

  primary_container {
    image          = local.image_uri
    model_data_url = var.model_data_url
    environment = {
      SAGEMAKER_PROGRAM = "inference.py"
    }
  }

  tags = merge(var.tags, { ModelVersion = var.model_version })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint_configuration" "this" {
  name        = "${var.name_prefix}-config-${local.revision}"
  kms_key_arn = var.kms_key_arn

  production_variants {
    variant_name           = var.variant.name
    model_name             = aws_sagemaker_model.this.name
    instance_type          = var.variant.instance_type
    initial_instance_count = var.variant.initial_instance_count
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint" "this" {
  name                 = var.endpoint_name
  endpoint_config_name = aws_sagemaker_endpoint_configuration.this.name
  tags                 = var.tags
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "sagemaker"
  resource_id        = local.resource_id
  scalable_dimension = "sagemaker:variant:DesiredInstanceCount"
  min_capacity       = var.autoscaling.min_capacity
  max_capacity       = var.autoscaling.max_capacity
}

resource "aws_appautoscaling_policy" "invocations" {
  name               = "${var.name_prefix}-invocations-per-instance"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling.target_invocations_per_instance
    scale_in_cooldown  = var.autoscaling.scale_in_cooldown_seconds
    scale_out_cooldown = var.autoscaling.scale_out_cooldown_seconds
    disable_scale_in   = var.autoscaling.disable_scale_in

    predefined_metric_specification {
      predefined_metric_type = "SageMakerVariantInvocationsPerInstance"
    }
  }
}
