variable "function_name" {
  description = "Name of the Lambda function."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,64}$", var.function_name))
    error_message = "The function_name must be 1-64 letters, digits, hyphens or underscores."
  }
}

variable "zip_path" {
  description = "Path of the deployment package that `make lambda` builds (build/lambda.zip)."
  type        = string

  validation {
    condition     = endswith(var.zip_path, ".zip")
    error_message = "The zip_path must point to a .zip file."
  }
}

variable "role_arn" {
  description = "Execution role of the function (from the iam module)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.role_arn))
    error_message = "The role_arn must be an IAM role ARN."
  }
}

variable "endpoint_name" {
  description = "SageMaker endpoint the function invokes (ENDPOINT_NAME)."
  type        = string
}

variable "alias_name" {
  description = "Name of the alias that serves traffic; the caller builds it, as IAM lets the operator invoke only it."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,128}$", var.alias_name)) && !can(regex("^[0-9]+$", var.alias_name))
    error_message = "The alias_name must be 1-128 letters, digits, hyphens or underscores, and not a version number."
  }
}

variable "top_k" {
  description = "Default number of predictions returned (TOP_K)."
  type        = number
  default     = 5
  nullable    = false

  validation {
    condition     = var.top_k >= 1 && var.top_k <= 133 && floor(var.top_k) == var.top_k
    error_message = "The top_k must be a whole number between 1 and 133 (the number of breeds)."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of the function."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "The log_level must be one of DEBUG, INFO, WARNING or ERROR."
  }
}

variable "runtime" {
  description = "Python runtime of the function."
  type        = string
  default     = "python3.12"

  validation {
    condition     = can(regex("^python3\\.(1[1-9])$", var.runtime))
    error_message = "The runtime must be python3.11 or newer."
  }
}

variable "memory_size_mb" {
  description = "Memory of the function in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size_mb >= 128 && var.memory_size_mb <= 10240
    error_message = "The memory_size_mb must be between 128 and 10240."
  }
}

variable "timeout_seconds" {
  description = "Function timeout; above the endpoint's 60 s invocation limit would only hold a stuck call longer."
  type        = number
  default     = 30

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 60
    error_message = "The timeout_seconds must be between 1 and 60, the SageMaker invocation limit."
  }
}

variable "concurrency" {
  description = "Reserved concurrency of the function (null: no reservation, the account's unreserved pool) and provisioned concurrency of the live alias."
  type = object({
    reserved    = optional(number)
    provisioned = optional(number, 2)
  })
  default  = {}
  nullable = false

  validation {
    condition     = coalesce(var.concurrency.reserved, 1) >= 1 && floor(coalesce(var.concurrency.reserved, 1)) == coalesce(var.concurrency.reserved, 1)
    error_message = "The concurrency.reserved must be null (no reservation) or a whole number of at least 1. AWS refuses a reservation that leaves the account fewer than 100 unreserved executions, so a new account (concurrency limit 10) cannot reserve any: keep null there (see the module README)."
  }

  validation {
    condition     = var.concurrency.provisioned >= 0 && var.concurrency.provisioned <= coalesce(var.concurrency.reserved, var.concurrency.provisioned)
    error_message = "The concurrency.provisioned must be between 0 and concurrency.reserved (when a reservation is set)."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's log group."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts, e.g. 30, 90 or 365."
  }
}

variable "log_kms_key_arn" {
  description = "Key that encrypts the log group; null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "tracing_enabled" {
  description = "Active X-Ray tracing (the role needs the X-Ray write actions: iam module lambda_tracing_enabled)."
  type        = bool
  default     = false
  nullable    = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
