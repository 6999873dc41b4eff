variable "name_prefix" {
  description = "Prefix of the model, endpoint configuration and scaling policy names, e.g. breedops-local."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3-40 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "endpoint_name" {
  description = "Name of the SageMaker endpoint; the caller builds it, as the Lambda role is scoped to it before the endpoint exists."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", var.endpoint_name))
    error_message = "The endpoint_name must be a valid SageMaker endpoint name: up to 63 letters, digits or hyphens."
  }
}

variable "model_data_url" {
  description = "S3 URI of the model.tar.gz the training job wrote (jobs/<job-name>/output/model.tar.gz)."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9.-]{3,63}/.+\\.tar\\.gz$", var.model_data_url))
    error_message = "The model_data_url must be an S3 URI of a .tar.gz file, e.g. s3://bucket/jobs/name/output/model.tar.gz."
  }
}

variable "model_version" {
  description = "Label of the deployed model (the training job name), tagged onto the model."
  type        = string
  default     = "unversioned"
}

variable "image_uri" {
  description = "PyTorch inference image of the serving container; null: the AWS Deep Learning Container of the provider's region."
  type        = string
  default     = null

  validation {
    condition     = var.image_uri == null || can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+$", coalesce(var.image_uri, "-")))
    error_message = "The image_uri must be an ECR image URI with a tag, e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:<tag>."
  }
}

variable "execution_role_arn" {
  description = "SageMaker execution role that pulls the image and reads the model data."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.execution_role_arn))
    error_message = "The execution_role_arn must be an IAM role ARN."
  }
}

variable "kms_key_arn" {
  description = "Key that encrypts the storage volume of the endpoint's instances."
  type        = string
}

variable "variant" {
  description = "The production variant: name, instance type and initial instance count."
  # The one typed definition of the variant and of autoscaling below: the platform module and the
  # env roots pass the settings through untyped, and null stands for these defaults.
  type = object({
    name                   = optional(string, "primary")
    instance_type          = optional(string, "ml.m5.large")
    initial_instance_count = optional(number, 1)
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^ml\\.[a-z0-9]+\\.[0-9]*x?large$", var.variant.instance_type))
    error_message = "The variant.instance_type must be a SageMaker hosting instance type such as ml.m5.large."
  }

  validation {
    condition     = var.variant.initial_instance_count >= 1 && floor(var.variant.initial_instance_count) == var.variant.initial_instance_count
    error_message = "The variant.initial_instance_count must be a whole number of at least 1."
  }

  validation {
    condition     = can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", var.variant.name))
    error_message = "The variant.name must be up to 63 letters, digits or hyphens."
  }
}

variable "autoscaling" {
  description = "Target tracking on SageMakerVariantInvocationsPerInstance: capacity bounds, target (invocations per instance per minute) and cooldowns."
  type = object({
    min_capacity                    = optional(number, 1)
    max_capacity                    = optional(number, 4)
    target_invocations_per_instance = optional(number, 1000)
    scale_in_cooldown_seconds       = optional(number, 300)
    scale_out_cooldown_seconds      = optional(number, 60)
    disable_scale_in                = optional(bool, false)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.autoscaling.min_capacity >= 1 && var.autoscaling.min_capacity <= var.autoscaling.max_capacity
    error_message = "The autoscaling.min_capacity must be at least 1 and no greater than autoscaling.max_capacity."
  }

  validation {
    condition     = var.autoscaling.target_invocations_per_instance > 0
    error_message = "The autoscaling.target_invocations_per_instance must be greater than 0."
  }

  validation {
    condition     = var.autoscaling.scale_in_cooldown_seconds >= 0 && var.autoscaling.scale_out_cooldown_seconds >= 0
    error_message = "The autoscaling cooldowns must not be negative."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
