"""The training entry point (one script for SageMaker, EC2 and local) and its helpers."""
