variable "name_prefix" {
  description = "Prefix of every resource name: <project>-<environment>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3-40 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "model_artifact" {
  description = "The trained model to serve (contract 6); null deploys the base only."
  type = object({
    model_data_url       = string
    training_job_name    = string
    training_job_arn     = string
    tuning_job_name      = optional(string)
    best_hyperparameters = optional(map(string), {})
    test_metrics         = optional(map(number), {})
  })
  default = null

  validation {
    condition = var.model_artifact == null ? true : (
      can(regex("^s3://[a-z0-9.-]{3,63}/jobs/[^/]+/output/model\\.tar\\.gz$", var.model_artifact.model_data_url)) &&
      can(regex("^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:training-job/.+$", var.model_artifact.training_job_arn))
    )
    error_message = "The model_artifact needs a model_data_url of the form s3://<bucket>/jobs/<job-name>/output/model.tar.gz and a SageMaker training_job_arn."
  }
}

variable "lambda_zip_path" {
  description = "The Lambda deployment package (`make lambda` builds build/lambda.zip); read only once an artifact exists."
  type        = string
}

variable "force_destroy_bucket" {
  description = "Let a destroy delete the data bucket with its objects."
  type        = bool
  default     = false
}

variable "deny_insecure_transport" {
  description = "Attach the TLS-only bucket policy (off only for a plain-HTTP emulator)."
  type        = bool
  default     = true
}

variable "create_training_instance" {
  description = "Create the EC2 training instance and its instance profile."
  type        = bool
  default     = false
}

# Typed, defaulted and validated once, in the endpoint and inference_lambda modules (Terraform has
# no shared types): a second typed copy here had to repeat every default, and its optional
# attribute defaults also replaced an explicit null (concurrency.reserved = null: no reservation).
# Settings are checked once serving exists, as the modules that use them exist only then.
variable "endpoint" {
  description = "Endpoint settings: image_uri (null: the PyTorch inference image of the region), variant and autoscaling, as the endpoint module's variables of those names."
  type        = any
  default     = {}
}

variable "inference_lambda" {
  description = "Lambda settings: top_k, concurrency (reserved null: no reservation; provisioned) and tracing_enabled, as the inference_lambda module's variables of those names."
  type        = any
  default     = {}
}

variable "operator_principals" {
  description = "IAM principal ARNs that may assume the operator role and run the pipeline (empty: no operator role)."
  type        = list(string)
  default     = []
}
