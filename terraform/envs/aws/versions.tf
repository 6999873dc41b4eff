terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80"
    }
  }

  # bucket, key and region come from `terraform init -backend-config=backend.hcl`
  # (see backend.hcl.example); use_lockfile needs Terraform >= 1.10.
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}
