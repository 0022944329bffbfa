"""AWS Signature Version 4: the canonical request, verification of signed requests (the
Lambda API, IAM-authorised function URLs and routes), signing (the CLI), and the key
pairs a nimbus accepts."""
