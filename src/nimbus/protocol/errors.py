"""Errors the protocol layer raises itself (a request it cannot parse, an operation
nimbus does not implement, an unexpected failure), and ``AwsError`` for handlers that
need an AWS error code without a ``NimbusError`` class of its own."""

from __future__ import annotations

from nimbus.errors import NimbusError


class AwsError(NimbusError):
    """An AWS error by its code: ``type_name`` is the error shape's name in the service
    model (or one of AWS's common error codes), ``status`` the HTTP status used when the
    model does not say, ``sender`` whether the caller is at fault (the query protocol's
    ``Type``: Sender or Receiver); ``extra`` members are sent along as modeled."""

    kind = None

    def __init__(
        self,
        type_name: str,
        message: str,
        *,
        status: int = 400,
        sender: bool | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.extra = dict(extra)  # additional modeled members of the error shape
        self.type_name = type_name
        self.status = status
        self.sender = status < 500 if sender is None else sender


def internal_failure(detail: str) -> AwsError:
    """AWS's common answer when serving failed on our side (SDKs retry it)."""
    return AwsError(
        "InternalFailure",
        f"The request processing has failed because of an unknown error: {detail}",
        status=500,
    )
