variable "create" {
  description = "Create the training instance. Off by default: SageMaker is the main training path and a GPU instance costs money while it runs."
  type        = bool
  default     = false
}

variable "name_prefix" {
  description = "Prefix of every resource name, e.g. breedops-local."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3-40 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "ami_name_filter" {
  description = "Name filter of the Deep Learning AMI (owner amazon); the most recent match is used."
  type        = string
  default     = "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.* (Ubuntu 22.04) *"

  validation {
    condition     = length(trimspace(var.ami_name_filter)) > 0
    error_message = "The ami_name_filter must not be empty."
  }
}

variable "instance_type" {
  description = "EC2 instance type; a GPU family (g4dn, g5, g6, p3, p4d, p5) that the Deep Learning AMI supports."
  type        = string
  default     = "g5.xlarge"

  validation {
    condition     = can(regex("^(g4dn|g5|g6|g6e|p3|p4d|p5)\\.[0-9]*x?large$", var.instance_type))
    error_message = "The instance_type must be a GPU instance of the g4dn, g5, g6, g6e, p3, p4d or p5 family, e.g. g5.xlarge."
  }
}

variable "subnet_id" {
  description = "Subnet of the instance; null uses the default VPC's default subnet. It needs a route to S3 and Systems Manager."
  type        = string
  default     = null
}

variable "vpc_id" {
  description = "VPC of the security group; null uses the default VPC."
  type        = string
  default     = null
}

variable "instance_profile_name" {
  description = "Instance profile that grants data read, artifact write and Session Manager (from the iam module)."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted root volume in GiB; the Deep Learning AMI alone takes about 100 GiB."
  type        = number
  default     = 150

  validation {
    condition     = var.root_volume_size_gb >= 100 && var.root_volume_size_gb <= 2000
    error_message = "The root_volume_size_gb must be between 100 (the AMI's size) and 2000."
  }
}

variable "kms_key_arn" {
  description = "Key that encrypts the root volume; null uses the account's default EBS key."
  type        = string
  default     = null
}

variable "training" {
  description = "What the instance trains: where the data and code are in S3, the job name, the hyperparameters (passed as --name value) and the shell line that activates the AMI's PyTorch environment."
  type = object({
    bucket_name     = string
    dataset         = optional(string, "digits")
    job_name        = optional(string, "ec2-training")
    source_s3_uri   = optional(string)
    entry_point     = optional(string, "breedops.training.train")
    hyperparameters = optional(map(string), {})
    # The OSS Nvidia Driver PyTorch DLAMIs keep PyTorch in a venv; older ones in conda
    # (`source /opt/conda/bin/activate pytorch`).
    python_activate = optional(string, "source /opt/pytorch/bin/activate")
  })

  validation {
    condition     = can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", var.training.job_name))
    error_message = "The training.job_name must be up to 63 letters, digits or hyphens, like a SageMaker job name."
  }

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.training.dataset)) && can(regex("^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$", var.training.entry_point))
    error_message = "The training.dataset must be letters, digits, '.', '_' or '-' (an S3 folder name), and training.entry_point a Python module name."
  }

  validation {
    condition     = alltrue([for name in keys(var.training.hyperparameters) : can(regex("^[a-z0-9][a-z0-9_-]*$", name))])
    error_message = "The training.hyperparameters names must be flag names (lowercase letters, digits, '-' or '_'), e.g. batch-size."
  }

  validation {
    condition     = var.training.source_s3_uri == null || can(regex("^s3://[a-z0-9.-]{3,63}/.+\\.tar\\.gz$", coalesce(var.training.source_s3_uri, "s3://x")))
    error_message = "The training.source_s3_uri must be an s3://<bucket>/<key>.tar.gz URI."
  }

  validation {
    condition     = length(trimspace(var.training.python_activate)) > 0 && !strcontains(var.training.python_activate, "\n")
    error_message = "The training.python_activate must be one non-empty shell line."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
