# Realistic values for the mocked AWS provider that every module's `terraform test` shares.

mock_data "aws_caller_identity" {
  defaults = { account_id = "123456789012" }
}

mock_data "aws_partition" {
  defaults = { partition = "aws" }
}

mock_data "aws_region" {
  defaults = { name = "us-east-1" }
}

# Policy JSON is rendered by the provider, so the tests assert on the statements instead.
mock_data "aws_iam_policy_document" {
  defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
}

mock_data "aws_ami" {
  defaults = { id = "ami-0123456789abcdef0" }
}

mock_data "aws_vpc" {
  defaults = { id = "vpc-0123456789abcdef0" }
}

mock_resource "aws_s3_bucket" {
  defaults = { arn = "arn:aws:s3:::breedops-test-data-123456789012" }
}

mock_resource "aws_kms_key" {
  defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab" }
}

mock_resource "aws_iam_policy" {
  defaults = { arn = "arn:aws:iam::123456789012:policy/breedops-test-policy" }
}

mock_resource "aws_iam_role" {
  defaults = { arn = "arn:aws:iam::123456789012:role/breedops-test-sagemaker-execution" }
}

mock_resource "aws_lambda_function" {
  defaults = {
    arn     = "arn:aws:lambda:us-east-1:123456789012:function:breedops-test-inference"
    version = "1"
  }
}
