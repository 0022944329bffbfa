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

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp

from nimbus import ids
from nimbus.cluster.nodes import BEAT_S, STALE_S, NodeState
from nimbus.cluster.placement import Placement
from nimbus.config import Config
from nimbus.errors import NodeLost, RelayedError, TooManyRequests
from nimbus.invocation.invoker import InvokeResult
from nimbus.models import FunctionVersion
from nimbus.sigv4.credentials import Credentials, load_credentials
from nimbus.sigv4.signing import sign

log = logging.getLogger("nimbus.cluster.forward")

# The worker takes the request id the server gave the invocation (an async event keeps
# its own across attempts; a function URL has already answered with it in a header).
REQUEST_ID_HEADER = "x-nimbus-request-id"
# The version the server resolved and picked ("<version>:<RevisionId>"): the worker runs
# that version, and reads the function again first if its own copy is older (a change
# made through a server reaches the other nodes' caches a moment later).
VERSION_HEADER = "x-nimbus-version"
_CONNECT_S = 3.0
_SLACK_S = 30.0  # beyond the function's timeout: its init, queueing, the answer
# Idle connections are dropped before the worker's server drops them (uvicorn: 5 s), so
# a request is never written into a connection the other end is closing, where a lost
# answer could not be told from a refused request.
_KEEPALIVE_S = 3.0
# What a worker answers when it does not accept this server's signature.
_REFUSED = (401, 403)
# Where a worker node writes out its batched log records (api/logs.py), and how long a
# log read waits for one.
FLUSH_LOGS_PATH = "/_nimbus/logs/flush"
_FLUSH_S = 1.0


class Forwarder:
    """Sends invocations to worker nodes; one per process, on its event loop.

    aiohttp rather than httpx: measured here, httpx's client spent ~1.3 ms of CPU per
    request and aiohttp's ~0.1 ms, on a path every invocation of a cluster takes."""

    def __init__(self, placement: Placement, config: Config) -> None:
        self.placement = placement
        self.region = config.region
        self.credentials: Credentials | None = (
            load_credentials(config) if config.api_auth == "sigv4" else None)
        self._session: aiohttp.ClientSession | None = None
        # The tasks waiting on each node's answer, and those given up on (see _watch).
        self._waiting: dict[str, set[asyncio.Task[Any]]] = {}
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._session is not None:
            await self._session.close()

    async def _watch(self) -> None:
        """Give up on invocations a worker that went silent holds (no announcement for
        STALE_S: killed, hung or cut off), instead of waiting out their timeout: their
        callers get NodeLost (an async event goes back to its queue) within a few
        seconds. Only once the bucket, read again, confirms it: a server cut off itself
        hears no worker, and its workers may be fine."""
        board = self.placement.board
        while True:
            await asyncio.sleep(BEAT_S)
            if not self._waiting or not board.silent(self._waiting):
                continue
            try:
                silent = await board.confirm_silent(list(self._waiting))
            except Exception:  # never the end of the watch
                log.exception("cannot confirm which worker nodes went silent")
                continue
            for node_id in silent:
                for task in self._waiting.get(node_id, ()):
                    if task not in self._abandoned:
                        self._abandoned.add(task)
                        task.cancel()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on the loop that uses it
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=_KEEPALIVE_S),
                skip_auto_headers=("User-Agent", "Content-Type"), auto_decompress=False)
        return self._session

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
                   REQUEST_ID_HEADER: request_id,
                   VERSION_HEADER: f"{version.version}:{version.revision_id}"}
        if client_context is not None:
            headers["x-amz-client-context"] = base64.b64encode(client_context.encode()).decode()
        if trace_id is not None:
            headers["x-amzn-trace-id"] = trace_id
        path = f"/2015-03-31/functions/{quote(name, safe='')}/invocations"
        query = urlencode({"Qualifier": qualifier}) if qualifier else ""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_S,
                                        sock_read=version.timeout + _SLACK_S)
        tried: set[str] = set()
        task = asyncio.current_task()
        assert task is not None
        cancelled_before = task.cancelling()  # requests to cancel it that are not ours
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())
        while (node := self.placement.choose(key, memory, frozenset(tried))) is not None:
            url = f"{node.url}{path}" + (f"?{query}" if query else "")
            self.placement.sending(node, key, memory)
            waiting = self._waiting.setdefault(node.node_id, set())
            waiting.add(task)
            try:
                async with self._client().post(
                        url, data=payload, headers=self._signed(url, path, query, headers,
                                                                payload),
                        timeout=timeout) as response:
                    body = await response.read()
                    if response.status not in _REFUSED:
                        return _result(response.status, response.headers, body, request_id)
                # The worker refused the server itself (its signature: a key pair that
                # differs, a clock off by minutes), not the caller: another node may not.
                log.error("worker node %s (%s) refused this server's request (%s): check "
                          "that every node has the same key pair and a synchronised clock",
                          node.node_id, node.url, response.status)
                self.placement.unreachable(node)
                tried.add(node.node_id)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError,
                    ConnectionRefusedError):
                self.placement.unreachable(node)  # it never saw the invocation
                tried.add(node.node_id)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.placement.unreachable(node)
                raise _lost(node, exc) from exc
            except asyncio.CancelledError:
                if task not in self._abandoned:
                    raise
                self._abandoned.discard(task)
                if task.uncancel() > cancelled_before:
                    raise  # its caller cancelled it too
                self.placement.unreachable(node)
                raise _lost(node, None) from None
            finally:
                if task in self._abandoned:  # given up on, but it ended some other way
                    self._abandoned.discard(task)
                    task.uncancel()
                waiting.discard(task)
                if not waiting and self._waiting.get(node.node_id) is waiting:
                    del self._waiting[node.node_id]
                self.placement.answered(node, key, memory)
        return None

    async def flush_logs(self) -> None:
        """Ask every live worker to write the log records it still holds (its writer
        batches them), so a log read through this server sees what ran there."""
        await self.ask_all("POST", FLUSH_LOGS_PATH,
                           unanswered="lines of what ran there may show a moment later")

    async def ask_all(self, method: str, path: str, query: str = "", *,
                      unanswered: str = "") -> list[tuple[NodeState, bytes | None]]:
        """One request to every live worker at once (signed as invocations are), each
        given ``_FLUSH_S``: each node's answer body, None where it gave no 200/204 in
        time (logged, with ``unanswered``: what that means for the caller)."""
        return list(await asyncio.gather(*(
            self._ask(node, method, path, query, unanswered)
            for node in self.placement.board.alive())))

    async def _ask(self, node: NodeState, method: str, path: str, query: str,
                   unanswered: str) -> tuple[NodeState, bytes | None]:
        url = f"{node.url}{path}" + (f"?{query}" if query else "")
        try:
            async with self._client().request(
                    method, url, data=b"" if method == "POST" else None,
                    headers=self._signed(url, path, query, {}, b"", method),
                    timeout=aiohttp.ClientTimeout(total=_FLUSH_S)) as response:
                body = await response.read()
                if response.status in (200, 204):
                    return node, body
                reason = f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = type(exc).__name__
        log.warning("worker node %s (%s) did not answer %s %s (%s)%s", node.node_id, node.url,
                    method, path, reason, f": {unanswered}" if unanswered else "")
        return node, None

    def _signed(self, url: str, path: str, query: str, headers: dict[str, str],
                body: bytes, method: str = "POST") -> dict[str, str]:
        if self.credentials is None:
            return headers
        host = urlsplit(url).netloc
        added = sign(method, path, query, [("host", host), *headers.items()], body,
                     self.credentials, region=self.region, service="lambda")
        return {**headers, **dict(added)}


def _result(status: int, headers: Mapping[str, str], body: bytes,
            request_id: str) -> InvokeResult:
    if status != 200:
        raise _relayed(status, headers, body)
    tail = headers.get("x-amz-log-result", "")
    return InvokeResult(
        payload=body,
        function_error=headers.get("x-amz-function-error"),
        executed_version=headers.get("x-amz-executed-version", "$LATEST"),
        log_text=base64.b64decode(tail).decode(errors="replace") if tail else "",
        request_id=headers.get("x-amzn-requestid", request_id),
    )


def _relayed(status: int, headers: Mapping[str, str], raw: bytes) -> Exception:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"Message": raw[:1000].decode(errors="replace") or f"HTTP {status}"}
    message_key = "Message" if "Message" in body else "message"
    message = str(body.pop(message_key, ""))
    kind = body.pop("Type", None)
    type_name = headers.get("x-amzn-errortype", "ServiceException").split(":")[0]
    if status == 429:
        after = headers.get("retry-after", "1")
        return TooManyRequests(message, reason=str(body.get("Reason", "")),
                               retry_after=int(after) if after.isdigit() else 1)
    return RelayedError(status, type_name, message, kind, message_key, **body)


def _lost(node: NodeState, exc: BaseException | None) -> NodeLost:
    why = type(exc).__name__ if exc is not None else f"silent for {STALE_S:g} s"
    return NodeLost(
        f"The worker node {node.node_id} ({node.url}) stopped answering while it ran this "
        f"invocation ({why}); it may or may not have run. Retry if the function is safe "
        "to run twice.")

