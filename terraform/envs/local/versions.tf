terraform {
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80"
    }
  }

  # State stays on this machine under .local/ (the Python driver points it at its state dir).
  backend "local" {
    path = "../../../.local/terraform/local.tfstate"
  }
}
