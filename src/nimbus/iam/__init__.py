"""Access control: principals (access keys with identity policies), IAM-style policy
evaluation, and the decision combining identity and resource-based policies."""
