"""Observability: logs (and later metrics, traces, cost) fed by invocation outcomes."""
