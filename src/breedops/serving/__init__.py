"""Serving: the inference handler, local SageMaker hosting, the Lambda package and runner."""
