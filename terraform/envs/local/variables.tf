variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "breedops"
}

variable "environment" {
  description = "Environment name, the second part of every resource name."
  type        = string
  default     = "local"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "model_artifact" {
  description = "The trained model to serve, written by the Python side into artifacts.auto.tfvars.json; null deploys the base only."
  type = object({
    model_data_url       = string
    training_job_name    = string
    training_job_arn     = string
    tuning_job_name      = optional(string)
    best_hyperparameters = optional(map(string), {})
    test_metrics         = optional(map(number), {})
  })
  default = null
}

variable "lambda_zip_path" {
  description = "The Lambda deployment package, relative to this root (`make lambda` builds it)."
  type        = string
  default     = "../../../build/lambda.zip"
}

variable "force_destroy_bucket" {
  description = "Let a destroy delete the data bucket with its objects. Only `breedops terraform destroy --force` sets it."
  type        = bool
  default     = false
}

variable "create_training_instance" {
  description = "Create the EC2 training instance (the plain-machine training path)."
  type        = bool
  default     = false
}

variable "endpoint_image_uri" {
  description = "PyTorch inference image of the endpoint; null keeps the endpoint module's default."
  type        = string
  default     = null
}

variable "endpoint_variant" {
  description = "Endpoint variant settings (see the endpoint module)."
  type = object({
    name                   = optional(string, "primary")
    instance_type          = optional(string, "ml.m5.large")
    initial_instance_count = optional(number, 1)
  })
  default = {}
}

variable "endpoint_autoscaling" {
  description = "Endpoint autoscaling settings (see the endpoint module)."
  type = object({
    min_capacity                    = optional(number, 1)
    max_capacity                    = optional(number, 4)
    target_invocations_per_instance = optional(number, 200)
    scale_in_cooldown_seconds       = optional(number, 300)
    scale_out_cooldown_seconds      = optional(number, 60)
    disable_scale_in                = optional(bool, false)
  })
  default = {}
}

variable "lambda_concurrency" {
  description = "Reserved and provisioned concurrency of the inference Lambda."
  type = object({
    reserved    = optional(number, 10)
    provisioned = optional(number, 2)
  })
  default = {}
}

variable "top_k" {
  description = "Default number of predictions the Lambda returns."
  type        = number
  default     = 5
}
