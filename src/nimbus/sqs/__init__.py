"""SQS-compatible queues on nimbus' own store: the domain (``Queues``) that the SQS API
handlers, async destinations, dead-letter configs and event source mappings share."""
