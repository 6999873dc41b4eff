"""breedops: an image classifier operationalised on AWS as code."""

__version__ = "0.1.0"
