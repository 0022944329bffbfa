"""One S3 request as its handler sees it: the operation, its input (botocore's member
names), the raw headers and query, the streaming body, and the server's services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nimbus.api.s3_payload import Payload
from nimbus.api.s3_wire import Reply, result
from nimbus.api.services import Services
from nimbus.s3.store import S3Store


@dataclass
class S3Call:
    operation: str
    params: dict[str, Any]
    headers: Mapping[str, str]  # lower-case names
    query: dict[str, str]
    payload: Payload
    services: Services
    request_id: str
    base_url: str  # scheme://host[:port] the request came to
    virtual_host: bool  # the bucket was named by the Host header

    @property
    def store(self) -> S3Store:
        return self.services.s3

    @property
    def region(self) -> str:
        return self.services.config.region

    @property
    def bucket(self) -> str:
        return str(self.params["Bucket"])

    @property
    def key(self) -> str:
        return str(self.params["Key"])

    def reply(self, output: dict[str, Any] | None = None) -> Reply:
        """The operation's output as S3 writes it."""
        return result(self.operation, output or {}, self.request_id)

    def owner(self) -> dict[str, str]:
        """The owner of every bucket and object: this nimbus's account."""
        account = self.services.config.account_id
        return {"ID": account.rjust(64, "0"), "DisplayName": "nimbus"}


Handler = Callable[[S3Call], Awaitable[Reply]]
