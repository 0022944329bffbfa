"""Event sources: what starts a function other than a direct call or an HTTP request.
Event source mappings poll queues and streams (the embedded SQS-compatible queues and
self-hosted brokers) and schedules fire on time, each under an ownership lease in the
store so that one process runs it."""
