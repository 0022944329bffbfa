"""The invocation engine: which version runs (targets), whether it may (concurrency),
where it runs (pool of environments, provisioned concurrency), and the synchronous run
that turns a sandbox's outcome into a Lambda response and a log record (invoker)."""
