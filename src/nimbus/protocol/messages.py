"""An HTTP request as the protocol layer reads it and the answer it writes: plain data,
independent of the web framework, so parsing and serialising are tested without one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl, unquote


@dataclass
class HttpRequest:
    """``raw_path`` is the path as sent (percent-encoded: a URI label may hold ``%2F``),
    ``query_string`` the raw query, ``headers`` with lower-case names."""

    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes = b""

    @cached_property
    def path(self) -> str:
        return unquote(self.raw_path)

    @cached_property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query_string, keep_blank_values=True)

    @cached_property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
