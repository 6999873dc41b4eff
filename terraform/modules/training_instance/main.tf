data "aws_ami" "deep_learning" {
  count = var.create ? 1 : 0

  most_recent = true
  owners      = ["amazon"]

  filter {
    name   = "name"
    values = [var.ami_name_filter]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

data "aws_vpc" "default" {
  count   = var.create && var.vpc_id == null ? 1 : 0
  default = true
}

data "aws_region" "current" {}

locals {
  vpc_id     = var.create ? coalesce(var.vpc_id, try(data.aws_vpc.default[0].id, null)) : null
  output_uri = "s3://${var.training.bucket_name}/jobs/${var.training.job_name}/output/"
  # The key breedops.jobs.source_bundle.SOURCE_BUNDLE_KEY uploads the training source to.
  default_source_s3_uri = "s3://${var.training.bucket_name}/code/breedops.tar.gz"
  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    bucket          = var.training.bucket_name
    dataset         = var.training.dataset
    job_name        = var.training.job_name
    region          = data.aws_region.current.name
    source_s3_uri   = coalesce(var.training.source_s3_uri, local.default_source_s3_uri)
    entry_point     = var.training.entry_point
    hyperparameters = var.training.hyperparameters
    python_activate = var.training.python_activate
  })
}

# No ingress rule at all: operators reach the instance through Session Manager, never SSH.
resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:The group is attached to the instance below (count-switched, which checkov cannot follow).
  count = var.create ? 1 : 0

  name        = "${var.name_prefix}-training-instance"
  description = "Training instance: no inbound; outbound HTTPS to S3, ECR and Systems Manager."
  vpc_id      = local.vpc_id
  tags        = var.tags

  # An explicit empty list also removes any inbound rule added outside Terraform.
  ingress = []

  egress {
    description = "HTTPS to S3, Systems Manager and package mirrors"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "this" {
  #checkov:skip=CKV_AWS_126:Detailed monitoring (1-minute metrics) adds cost and the job's own logs show progress.
  #checkov:skip=CKV_AWS_88:No public IP is requested; a default subnet may still assign one for S3 and SSM egress without a NAT gateway, and the group has no inbound rule.
  count = var.create ? 1 : 0

  ami                    = data.aws_ami.deep_learning[0].id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [aws_security_group.this[0].id]
  iam_instance_profile   = var.instance_profile_name
  ebs_optimized          = true
  user_data_base64       = base64gzip(local.user_data)

  # The user data ends with a shutdown; stopping keeps the volume for inspection, terminating would not.
  instance_initiated_shutdown_behavior = "stop"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size_gb
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  tags = merge(var.tags, { Name = "${var.name_prefix}-training" })

  lifecycle {
    # A newer Deep Learning AMI must not replace a running training instance.
    ignore_changes = [ami]
  }
}
