"""Errors of the execution layer.

``IsolationUnavailable`` and ``SandboxError`` are service-side failures (HTTP 500 if
they reach a client). ``InitError`` is not an API error: it is the function's own init
failure, which the invoker turns into a function error response (200 with
``X-Amz-Function-Error: Unhandled`` and ``payload`` as body), as Lambda does.
"""

from __future__ import annotations

import json

from nimbus.errors import InvalidParameterValue, ServiceError, TooManyRequests


class SandboxError(ServiceError):
    """The execution layer failed (a zygote died, an environment vanished...)."""


class IsolationUnavailable(SandboxError):
    """The configured isolation cannot be had on this host; nimbus never falls back."""


class CapacityExhausted(TooManyRequests):
    """No environment can start: every sandbox uid of this process is held by a busy,
    provisioned or stopping environment and no idle one was left to evict. A throttle
    (429 TooManyRequestsException, Lambda's shape when it has no capacity), not a
    failure: a sync caller retries, an async event waits in the queue."""

    def __init__(self, detail: str) -> None:
        super().__init__("Rate Exceeded.", reason="ConcurrentInvocationLimitExceeded")
        self.detail = detail  # for the log: which capacity ran out


class UnsupportedRuntime(InvalidParameterValue):
    """The runtime is not one this host offers."""


class EnvironmentGone(SandboxError):
    """Invoke on an environment that was stopped or died."""


class InitError(SandboxError):
    """The function failed its init phase (import, handler lookup, crash, timeout)."""

    def __init__(self, error_type: str, error_message: str, logs: bytes = b"",
                 init_duration_ms: float = 0.0, payload: bytes | None = None) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.logs = logs
        self.init_duration_ms = init_duration_ms
        self._payload = payload

    @property
    def payload(self) -> bytes:
        """Lambda's error JSON, as the invoke response body."""
        if self._payload is not None:
            return self._payload
        error = {"errorType": self.error_type, "errorMessage": self.error_message}
        return json.dumps(error).encode()
