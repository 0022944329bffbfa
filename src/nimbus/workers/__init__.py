"""Async worker processes: the worker (an engine that only dispatches), the supervisor
that starts and restarts them, and the queue server through which they reach the queue
the server owns."""
