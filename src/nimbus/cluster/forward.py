"""A server's invocations sent to the worker nodes placement chooses.

Every invocation a server would run (sync invokes, function URLs and HTTP APIs, async
events it pulled, event source batches, schedules) goes through the invoker, which asks
the ``Forwarder`` first: while a worker is alive the invocation runs there, through the
worker's own Invoke API (signed with the installation's key pair when the API wants
signatures), and its answer comes back as the invoker's own result, so every caller
treats it as it treats a local one. With no worker alive it runs on the server itself.

Failures: a worker that refuses the connection never saw the invocation, so another
node (or this server) runs it and the worker is left out for a while; one that goes
silent after it was sent may or may not have run it, so the caller gets ``NodeLost``
(an async event then goes back to its queue, as for any failed attempt).
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx

from nimbus import ids
from nimbus.cluster.nodes import NodeState
from nimbus.cluster.placement import Placement
from nimbus.config import Config
from nimbus.errors import NodeLost, RelayedError, TooManyRequests
from nimbus.invocation.invoker import InvokeResult
from nimbus.models import FunctionVersion
from nimbus.sigv4.credentials import load_credentials
from nimbus.sigv4.signing import httpx_auth

# The worker takes the request id the server gave the invocation (an async event keeps
# its own across attempts; a function URL has already answered with it in a header).
REQUEST_ID_HEADER = "x-nimbus-request-id"
_CONNECT_S = 3.0
_SLACK_S = 30.0  # beyond the function's timeout: its init, queueing, the answer


class Forwarder:
    """Sends invocations to worker nodes; one per process, on its event loop."""

    def __init__(self, placement: Placement, config: Config) -> None:
        self.placement = placement
        auth = (httpx_auth(load_credentials(config), region=config.region)
                if config.api_auth == "sigv4" else None)
        self.client = httpx.AsyncClient(
            auth=auth, limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))

    async def close(self) -> None:
        await self.client.aclose()

    async def invoke(
        self,
        version: FunctionVersion,
        name: str,
        qualifier: str | None,
        payload: bytes,
        client_context: str | None,
        trace_id: str | None,
        request_id: str | None,
    ) -> InvokeResult | None:
        """The invocation run on a worker; None: no worker can take it (run it here)."""
        key, memory = f"{version.function_name}:{version.version}", version.memory_size
        request_id = request_id or ids.request_id()
        headers = {"x-amz-invocation-type": "RequestResponse", "x-amz-log-type": "Tail",
                   REQUEST_ID_HEADER: request_id}
        if client_context is not None:
            headers["x-amz-client-context"] = base64.b64encode(client_context.encode()).decode()
        if trace_id is not None:
            headers["x-amzn-trace-id"] = trace_id
        path = f"/2015-03-31/functions/{quote(name, safe='')}/invocations"
        params = {"Qualifier": qualifier} if qualifier else None
        timeout = httpx.Timeout(version.timeout + _SLACK_S, connect=_CONNECT_S)
        tried: set[str] = set()
        while (node := self.placement.choose(key, memory, frozenset(tried))) is not None:
            self.placement.sending(node, key, memory)
            try:
                response = await self.client.post(node.url + path, params=params,
                                                  content=payload, headers=headers,
                                                  timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self.placement.unreachable(node)  # it never saw the invocation
                tried.add(node.node_id)
                continue
            except httpx.HTTPError as exc:
                self.placement.unreachable(node)
                raise _lost(node, exc) from exc
            finally:
                self.placement.answered(node, key, memory)
            return _result(response, request_id)
        return None


def _result(response: httpx.Response, request_id: str) -> InvokeResult:
    if response.status_code != 200:
        raise _relayed(response)
    tail = response.headers.get("x-amz-log-result", "")
    return InvokeResult(
        payload=response.content,
        function_error=response.headers.get("x-amz-function-error"),
        executed_version=response.headers.get("x-amz-executed-version", "$LATEST"),
        log_text=base64.b64decode(tail).decode(errors="replace") if tail else "",
        request_id=response.headers.get("x-amzn-requestid", request_id),
    )


def _relayed(response: httpx.Response) -> Exception:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"Message": response.text[:1000] or f"HTTP {response.status_code}"}
    message_key = "Message" if "Message" in body else "message"
    message = str(body.pop(message_key, ""))
    kind = body.pop("Type", None)
    type_name = response.headers.get("x-amzn-errortype", "ServiceException").split(":")[0]
    if response.status_code == 429:
        return TooManyRequests(message, reason=str(body.get("Reason", "")),
                               retry_after=int(response.headers.get("retry-after", "1") or 1))
    return RelayedError(response.status_code, type_name, message, kind, message_key, **body)


def _lost(node: NodeState, exc: httpx.HTTPError) -> NodeLost:
    return NodeLost(
        f"The worker node {node.node_id} ({node.url}) stopped answering while it ran this "
        f"invocation ({type(exc).__name__}); it may or may not have run. Retry if the "
        "function is safe to run twice.")

