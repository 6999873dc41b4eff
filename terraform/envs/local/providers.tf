# The emulator's address, fake credentials and the region come from the standard variables
# (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... in .local/env), so no endpoint is written here.
provider "aws" {
  region                      = var.region
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true

  default_tags {
    tags = local.tags
  }
}
