variable "name_prefix" {
  description = "Prefix of every role and policy name; SageMaker jobs and models the operator may manage must start with it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3-40 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "bucket_arn" {
  description = "ARN of the data bucket."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]{3,63}$", var.bucket_arn))
    error_message = "The bucket_arn must be an S3 bucket ARN such as arn:aws:s3:::my-bucket."
  }
}

variable "prefixes" {
  description = "Key prefixes of the bucket layout, each ending in a slash (the data_bucket module's prefixes output): every S3 grant is scoped to them; the operator stages job source under code, which the execution and instance roles read."
  type = object({
    data        = string
    jobs        = string
    checkpoints = string
    code        = string
  })

  validation {
    condition     = alltrue([for prefix in values(var.prefixes) : can(regex("^[a-z0-9][a-z0-9-]*/$", prefix))])
    error_message = "Each prefix must be lowercase letters, digits or hyphens ending in one slash, e.g. data/."
  }
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed key that encrypts the bucket."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "The kms_key_arn must be a KMS key ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>."
  }
}

variable "framework_image_repositories" {
  description = "ECR repositories of the SageMaker framework images the execution role may pull."
  type = object({
    account_id = optional(string, "763104351884")
    names      = optional(list(string), ["pytorch-training", "pytorch-inference"])
  })
  default = {}

  validation {
    condition     = can(regex("^[0-9]{12}$", var.framework_image_repositories.account_id)) && length(var.framework_image_repositories.names) > 0
    error_message = "The framework_image_repositories need a 12-digit account_id and at least one repository name."
  }
}

variable "metric_namespaces" {
  description = "CloudWatch namespaces the SageMaker execution role may put metrics into."
  type        = list(string)
  default     = ["/aws/sagemaker/TrainingJobs", "/aws/sagemaker/Endpoints"]

  validation {
    condition     = length(var.metric_namespaces) > 0 && alltrue([for ns in var.metric_namespaces : !strcontains(ns, "*")])
    error_message = "The metric_namespaces must list at least one namespace, and none may contain a wildcard."
  }
}

variable "endpoint_name" {
  description = "Name of the SageMaker endpoint the Lambda role may invoke (the only one)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", var.endpoint_name))
    error_message = "The endpoint_name must be a valid SageMaker endpoint name: up to 63 letters, digits or hyphens."
  }
}

variable "lambda_function_name" {
  description = "Name of the inference Lambda function; its role may write only to /aws/lambda/<name>."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,64}$", var.lambda_function_name))
    error_message = "The lambda_function_name must be 1-64 letters, digits, hyphens or underscores."
  }
}

variable "lambda_tracing_enabled" {
  description = "Grant the Lambda role the X-Ray write actions that active tracing needs."
  type        = bool
  default     = false
  nullable    = false
}

variable "create_training_instance_profile" {
  description = "Create the role and instance profile of the EC2 training instance."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "operator_principals" {
  description = "IAM principal ARNs (users or roles) that may assume the operator role to run the pipeline. Empty: no role is created; attach operator_policy_arn to the caller instead."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.operator_principals : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", arn))])
    error_message = "The operator_principals must be IAM user or role ARNs such as arn:aws:iam::123456789012:role/ci."
  }
}

variable "lambda_alias" {
  description = "The Lambda alias that serves traffic, the one the pipeline's smoke test invokes."
  type        = string
}
