"""The Lambda front door of the breedops endpoint (boto3 only: it ships in the runtime)."""
