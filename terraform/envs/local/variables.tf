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
  description = "The Lambda deployment package, relative to this root (`make lambda` builds it). The driver sets it (TF_VAR_lambda_zip_path) from the one path in breedops.settings."
  type        = string
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

# The two settings objects pass through the platform module as given: the endpoint and
# inference_lambda modules type, default and validate them.
variable "endpoint" {
  description = "Endpoint image_uri, variant and autoscaling (see terraform/modules/endpoint)."
  type        = any
  default     = {}
}

variable "inference_lambda" {
  description = "Lambda top_k, concurrency and tracing_enabled (see terraform/modules/inference_lambda); concurrency.reserved is 10 unless given, null for no reservation."
  type        = any
  default     = {}
}
