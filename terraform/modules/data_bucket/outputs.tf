output "bucket_name" {
  description = "Name of the data bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the data bucket."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "ARN of the customer-managed key that encrypts the bucket."
  value       = aws_kms_key.this.arn
}

output "prefixes" {
  description = "Key prefixes of the S3 layout: data/, jobs/, checkpoints/ and code/ (staged job source)."
  value       = local.prefixes
}
