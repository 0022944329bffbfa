"""The ``context`` object a Python handler receives, shaped like awslambdaric's.

Runs inside the sandbox on the function's Python (3.9+): standard library only.
"""

from __future__ import annotations

import os
import sys
import time


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __init__(self, raw: dict | None = None) -> None:
        raw = raw or {}
        self.cognito_identity_id = raw.get("cognitoIdentityId")
        self.cognito_identity_pool_id = raw.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
                f"cognito_identity_pool_id={self.cognito_identity_pool_id}])")


class Client:
    __slots__ = [
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    ]

    def __init__(self, raw: dict) -> None:
        for name in self.__slots__:
            setattr(self, name, raw.get(name))

    def __repr__(self) -> str:
        fields = ",".join(f"{n}={getattr(self, n)}" for n in self.__slots__)
        return f"Client([{fields}])"


class ClientContext:
    __slots__ = ["client", "custom", "env"]

    def __init__(self, raw: dict) -> None:
        self.custom = raw.get("custom")
        self.env = raw.get("env")
        client = raw.get("client")
        self.client = Client(client) if isinstance(client, dict) else None

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


_SETTINGS = ("AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
             "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
             "AWS_LAMBDA_FUNCTION_VERSION")


def function_settings() -> tuple:
    """The function's settings from Lambda's environment variables: read once per
    environment by the runtime (they are fixed for its life), not once per invocation."""
    env = os.environ
    return tuple(env.get(name) for name in _SETTINGS)


class LambdaContext:
    """Per-invocation facts; the function's settings come from Lambda's env vars."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str,
                 client_context: dict | None, cognito_identity: dict | None,
                 settings: tuple = ()) -> None:
        self.aws_request_id = request_id
        (self.log_group_name, self.log_stream_name, self.function_name,
         self.memory_limit_in_mb, self.function_version) = settings or function_settings()
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = None
        self.client_context: ClientContext | None = None
        if isinstance(client_context, dict):
            client_context.pop("w3c", None)
            self.client_context = ClientContext(client_context)
        self.identity = CognitoIdentity(cognito_identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg: object) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            "LambdaContext(["
            f"aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )
