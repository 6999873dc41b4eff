output "instance_id" {
  description = "ID of the training instance (null unless create)."
  value       = try(aws_instance.this[0].id, null)
}

output "ami_id" {
  description = "The Deep Learning AMI the instance runs (null unless create)."
  value       = try(data.aws_ami.deep_learning[0].id, null)
}

output "security_group_id" {
  description = "ID of the instance's security group, which has no inbound rule."
  value       = try(aws_security_group.this[0].id, null)
}

output "model_output_uri" {
  description = "Where the instance uploads model.tar.gz."
  value       = "${local.output_uri}model.tar.gz"
}

output "user_data" {
  description = "The rendered user data script (it holds no secret: the instance role supplies the credentials)."
  value       = local.user_data
}
