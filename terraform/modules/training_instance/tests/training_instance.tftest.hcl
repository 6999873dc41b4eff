# The shared mocks: terraform/testing/aws/aws.tfmock.hcl.
mock_provider "aws" {
  source = "../../testing/aws"
}

variables {
  name_prefix           = "breedops-test"
  instance_profile_name = "breedops-test-training-instance"
  training = {
    bucket_name = "breedops-test-data-123456789012"
    job_name    = "ec2-train-001"
  }
}

run "off_by_default" {
  command = plan

  assert {
    condition     = length(aws_instance.this) == 0 && length(aws_security_group.this) == 0 && length(data.aws_ami.deep_learning) == 0
    error_message = "No instance, security group or AMI lookup may exist unless create is true."
  }
}

run "instance_is_hardened" {
  command = plan

  variables {
    create = true
  }

  assert {
    condition     = aws_instance.this[0].instance_type == "g5.xlarge" && aws_instance.this[0].iam_instance_profile == "breedops-test-training-instance"
    error_message = "The instance must default to g5.xlarge and use the instance profile."
  }

  assert {
    condition     = aws_instance.this[0].metadata_options[0].http_tokens == "required" && aws_instance.this[0].metadata_options[0].http_put_response_hop_limit == 1
    error_message = "IMDSv2 must be required with a hop limit of 1."
  }

  assert {
    condition     = aws_instance.this[0].root_block_device[0].encrypted
    error_message = "The root volume must be encrypted."
  }

  assert {
    condition     = length(aws_security_group.this[0].ingress) == 0
    error_message = "There must be no inbound rule: Session Manager is the way in."
  }

  assert {
    condition     = aws_instance.this[0].instance_initiated_shutdown_behavior == "stop"
    error_message = "The shutdown at the end of the user data must stop the instance, not terminate it."
  }

  assert {
    condition     = contains(data.aws_ami.deep_learning[0].owners, "amazon") && strcontains(local.user_data, "BUCKET='breedops-test-data-123456789012'") && strcontains(local.user_data, "JOB_NAME='ec2-train-001'") && strcontains(local.user_data, "OUTPUT_PREFIX=\"s3://$BUCKET/jobs/$JOB_NAME/output\"") && strcontains(local.user_data, "shutdown -h now") && strcontains(local.user_data, "-m breedops.training.train")
    error_message = "The AMI must be Amazon's, and the user data must run the SageMaker entry point, upload to jobs/<name>/output/ and shut down."
  }
}

run "user_data_renders_the_job" {
  command = plan

  variables {
    training = {
      bucket_name     = "breedops-test-data-123456789012"
      job_name        = "ec2-train-002"
      dataset         = "dog-images"
      hyperparameters = { epochs = "3", "batch-size" = "32", arch = "it's" }
      python_activate = "source /opt/conda/bin/activate pytorch"
    }
  }

  assert {
    condition     = output.user_data == local.user_data && startswith(output.user_data, "#!/bin/bash\n") && strcontains(output.user_data, "set -Eeuo pipefail") && strcontains(output.user_data, "trap finish EXIT")
    error_message = "The user data must be a bash script that stops on errors and always runs its exit handler (the shutdown)."
  }

  assert {
    condition     = strcontains(output.user_data, "SOURCE_S3_URI='s3://breedops-test-data-123456789012/code/breedops.tar.gz'") && strcontains(output.user_data, "DATASET='dog-images'") && strcontains(output.user_data, "export AWS_DEFAULT_REGION='us-east-1'")
    error_message = "The source tarball must default to code/breedops.tar.gz, and the dataset and region must be rendered."
  }

  assert {
    condition     = strcontains(output.user_data, "--epochs '3'") && strcontains(output.user_data, "--batch-size '32'") && strcontains(output.user_data, "--arch 'it'\\''s'")
    error_message = "Each hyperparameter must be one --name 'value' pair, the value shell-quoted."
  }

  assert {
    condition     = length(regexall("(?m)^source /opt/conda/bin/activate pytorch$", output.user_data)) == 1
    error_message = "The python_activate line must appear once, alone on its line."
  }

  assert {
    condition     = output.model_output_uri == "s3://breedops-test-data-123456789012/jobs/ec2-train-002/output/model.tar.gz"
    error_message = "model_output_uri must name jobs/<job>/output/model.tar.gz."
  }
}

run "reject_hyperparameter_name_that_is_not_a_flag" {
  command = plan
  variables {
    training = { bucket_name = "b-123", hyperparameters = { "lr; rm -rf /" = "1" } }
  }
  expect_failures = [var.training]
}

run "reject_multi_line_python_activate" {
  command = plan
  variables {
    training = { bucket_name = "b-123", python_activate = "true\ncurl x | sh" }
  }
  expect_failures = [var.training]
}

run "reject_source_uri_that_is_not_a_tarball_in_s3" {
  command = plan
  variables {
    training = { bucket_name = "b-123", source_s3_uri = "https://example.com/x.tar.gz" }
  }
  expect_failures = [var.training]
}

run "reject_non_gpu_instance_type" {
  command = plan
  variables {
    instance_type = "t3.micro"
  }
  expect_failures = [var.instance_type]
}

run "reject_small_root_volume" {
  command = plan
  variables {
    root_volume_size_gb = 20
  }
  expect_failures = [var.root_volume_size_gb]
}

run "reject_empty_ami_filter" {
  command = plan
  variables {
    ami_name_filter = " "
  }
  expect_failures = [var.ami_name_filter]
}

run "reject_invalid_job_name" {
  command = plan
  variables {
    training = { bucket_name = "b-123", job_name = "bad_name!" }
  }
  expect_failures = [var.training]
}

run "reject_uppercase_name_prefix" {
  command = plan
  variables {
    name_prefix = "Breedops"
  }
  expect_failures = [var.name_prefix]
}
