# The shared mocks: terraform/testing/aws/aws.tfmock.hcl.
mock_provider "aws" {
  source = "../../testing/aws"
}

variables {
  name_prefix = "breedops-test"
}

run "bucket_is_protected_and_encrypted" {
  command = apply

  assert {
    condition     = aws_s3_bucket.this.bucket == "breedops-test-data-123456789012" && !aws_s3_bucket.this.force_destroy
    error_message = "The bucket must be named after the prefix and account, and refuse deletion while it holds objects by default."
  }

  assert {
    condition     = aws_kms_key.this.enable_key_rotation
    error_message = "The customer-managed key must rotate."
  }

  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" && one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == aws_kms_key.this.arn
    error_message = "The bucket must be encrypted with SSE-KMS under the customer-managed key."
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "Versioning must be enabled."
  }

  assert {
    condition = (aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.block_public_policy &&
    aws_s3_bucket_public_access_block.this.ignore_public_acls && aws_s3_bucket_public_access_block.this.restrict_public_buckets)
    error_message = "Every public access block setting must be on."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.bucket.statement :
      s.effect == "Deny" && anytrue([for c in s.condition : c.variable == "aws:SecureTransport" && contains(tolist(c.values), "false")])
    ])
    error_message = "The bucket policy must deny requests that do not use TLS."
  }

  assert {
    condition     = one([for r in aws_s3_bucket_lifecycle_configuration.this.rule : r if r.id == "expire-noncurrent-versions"]).noncurrent_version_expiration[0].noncurrent_days == 30
    error_message = "Noncurrent versions must expire after noncurrent_version_expiration_days."
  }

  assert {
    condition     = one([for r in aws_s3_bucket_lifecycle_configuration.this.rule : r if r.id == "abort-incomplete-multipart-uploads"]).abort_incomplete_multipart_upload[0].days_after_initiation == 7
    error_message = "Incomplete multipart uploads must be aborted after abort_incomplete_multipart_upload_days."
  }

  assert {
    condition     = output.prefixes == { data = "data/", jobs = "jobs/", checkpoints = "checkpoints/", code = "code/" }
    error_message = "The module must publish the data/, jobs/, checkpoints/ and code/ prefixes."
  }
}

run "force_destroy_only_when_asked" {
  command = plan

  variables {
    force_destroy = true
    bucket_name   = "my-explicit-bucket"
  }

  assert {
    condition     = length(aws_s3_bucket_policy.this) == 1
    error_message = "The TLS-only bucket policy must be attached by default."
  }

  assert {
    condition     = aws_s3_bucket.this.force_destroy && aws_s3_bucket.this.bucket == "my-explicit-bucket"
    error_message = "force_destroy and an explicit bucket_name must pass through."
  }
}

run "tls_policy_off_only_when_asked" {
  command = plan

  variables {
    deny_insecure_transport = false
  }

  assert {
    condition     = length(aws_s3_bucket_policy.this) == 0
    error_message = "deny_insecure_transport = false must leave the TLS-only policy out (plain-HTTP emulator only)."
  }
}

run "reject_invalid_bucket_name" {
  command = plan
  variables {
    bucket_name = "Invalid_Bucket"
  }
  expect_failures = [var.bucket_name]
}

run "reject_zero_noncurrent_days" {
  command = plan
  variables {
    noncurrent_version_expiration_days = 0
  }
  expect_failures = [var.noncurrent_version_expiration_days]
}

run "reject_zero_multipart_days" {
  command = plan
  variables {
    abort_incomplete_multipart_upload_days = 0
  }
  expect_failures = [var.abort_incomplete_multipart_upload_days]
}

run "reject_kms_window_out_of_range" {
  command = plan
  variables {
    kms_deletion_window_days = 3
  }
  expect_failures = [var.kms_deletion_window_days]
}

run "reject_uppercase_name_prefix" {
  command = plan
  variables {
    name_prefix = "Breedops"
  }
  expect_failures = [var.name_prefix]
}
