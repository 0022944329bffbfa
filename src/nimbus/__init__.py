"""nimbus: a self-hosted serverless platform speaking AWS Lambda's API."""
