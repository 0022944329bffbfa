"""CORS for function URLs and HTTP APIs: preflight answers and response headers.

Configured CORS is applied by the gateway, not the function:

- https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html#urls-cors ("If
  there are conflicting headers, the configured CORS headers on the function URL take
  precedence") and https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html
  (API Gateway answers preflight OPTIONS requests itself, "even if there isn't an
  OPTIONS route", and "ignores CORS headers returned from your backend integration").

So a preflight never reaches the function, and ``apply`` drops the function's own
``Access-Control-*`` headers before adding the configured ones. A preflight the
configuration does not cover (origin, method or a requested header not allowed) is
answered without ``Access-Control-Allow-*`` headers, which makes the browser refuse the
real request. ``AllowOrigins: ["*"]`` answers ``*``, except with ``AllowCredentials``,
where browsers refuse ``*`` and the request's own origin is echoed instead (with
``Vary: Origin``).

Configurations come in two spellings: Lambda's ``Cors`` (``AllowOrigins``...) and API
Gateway v2's ``CorsConfiguration`` on the wire (``allowOrigins``...). Both are read by
``Cors.from_config``; the control plane checks them (``nimbus.api.cors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nimbus.gateway.headers import first_header
from nimbus.gateway.reply import HttpReply


def pascal(config: dict[str, Any]) -> dict[str, Any]:
    """Either spelling, as Lambda's member names."""
    return {key[:1].upper() + key[1:]: value for key, value in config.items()}


@dataclass
class Cors:
    """A CORS configuration, ready to answer preflights and decorate replies."""

    allow_credentials: bool = False
    allow_headers: list[str] = field(default_factory=list)
    allow_methods: list[str] = field(default_factory=list)
    allow_origins: list[str] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    max_age: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Cors | None:
        """From a stored (already validated) Cors configuration; None when there is none."""
        if config is None:
            return None
        c = pascal(config)
        max_age = c.get("MaxAge")
        return cls(
            allow_credentials=bool(c.get("AllowCredentials")),
            allow_headers=list(c.get("AllowHeaders") or []),
            allow_methods=[m.upper() for m in c.get("AllowMethods") or []],
            allow_origins=list(c.get("AllowOrigins") or []),
            expose_headers=list(c.get("ExposeHeaders") or []),
            # API Gateway's -1 means "no Max-Age header", like leaving it out.
            max_age=max_age if isinstance(max_age, int) and max_age >= 0 else None,
        )

    def _origin_value(self, origin: str) -> str | None:
        """Access-Control-Allow-Origin for ``origin``, or None when it is not allowed."""
        if "*" in self.allow_origins:
            return origin if self.allow_credentials else "*"
        lowered = origin.lower()
        if any(lowered == allowed.lower().rstrip("/") for allowed in self.allow_origins):
            return origin
        return None

    def _method_allowed(self, method: str) -> bool:
        return "*" in self.allow_methods or method.upper() in self.allow_methods

    def _headers_allowed(self, requested: list[str]) -> bool:
        if "*" in self.allow_headers:
            return True
        allowed = {h.lower() for h in self.allow_headers}
        return all(h.lower() in allowed for h in requested)

    def preflight(self, method: str, headers: list[tuple[str, str]]) -> HttpReply | None:
        """The answer to a CORS preflight request, or None when this is not one.

        A preflight is an OPTIONS request with ``Origin`` and
        ``Access-Control-Request-Method``; the gateway answers it itself (204).
        """
        if method.upper() != "OPTIONS":
            return None
        origin = first_header(headers, "origin")
        requested_method = first_header(headers, "access-control-request-method")
        if origin is None or requested_method is None:
            return None
        requested_headers = [
            h.strip()
            for h in (first_header(headers, "access-control-request-headers") or "").split(",")
            if h.strip()
        ]
        allow_origin = self._origin_value(origin)
        reply = HttpReply(204, [])
        if (
            allow_origin is None
            or not self._method_allowed(requested_method)
            or not self._headers_allowed(requested_headers)
        ):
            # Not covered: no permission headers, so the browser stops here.
            reply.headers.append(("Vary", "Origin"))
            return reply
        out = reply.headers
        out.append(("Access-Control-Allow-Origin", allow_origin))
        if self.allow_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        # A wildcard is answered with what was asked: browsers do not honour "*" for
        # requests with credentials, and the question is all the browser checks.
        if "*" in self.allow_methods:
            out.append(("Access-Control-Allow-Methods", requested_method.upper()))
        else:
            out.append(("Access-Control-Allow-Methods", ", ".join(self.allow_methods)))
        if requested_headers:
            if "*" in self.allow_headers:
                out.append(("Access-Control-Allow-Headers", ", ".join(requested_headers)))
            else:
                out.append(("Access-Control-Allow-Headers", ", ".join(self.allow_headers)))
        if self.max_age is not None:
            out.append(("Access-Control-Max-Age", str(self.max_age)))
        if allow_origin != "*":
            out.append(("Vary", "Origin"))
        return reply

    def apply(self, request_headers: list[tuple[str, str]], reply: HttpReply) -> HttpReply:
        """``reply`` with the configured CORS headers in place of the function's own."""
        headers = [(k, v) for k, v in reply.headers if not k.lower().startswith("access-control-")]
        origin = first_header(request_headers, "origin")
        allow_origin = self._origin_value(origin) if origin is not None else None
        if allow_origin is not None:
            headers.append(("Access-Control-Allow-Origin", allow_origin))
            if self.allow_credentials:
                headers.append(("Access-Control-Allow-Credentials", "true"))
            if self.expose_headers:
                headers.append(("Access-Control-Expose-Headers", ", ".join(self.expose_headers)))
        if origin is not None and allow_origin != "*":
            headers = _add_vary(headers, "Origin")
        return HttpReply(reply.status, headers, reply.body)


def _add_vary(headers: list[tuple[str, str]], token: str) -> list[tuple[str, str]]:
    for i, (key, value) in enumerate(headers):
        if key.lower() == "vary":
            tokens = [t.strip().lower() for t in value.split(",")]
            if token.lower() not in tokens and "*" not in tokens:
                headers[i] = (key, f"{value}, {token}")
            return headers
    headers.append(("Vary", token))
    return headers
