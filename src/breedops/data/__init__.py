"""Datasets in the ImageFolder layout: prepare them locally and sync them to S3."""
