"""A webhook sink: a real HTTP server in the test process that records what it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Sinks listen on 127.0.0.1, a loopback address nimbus posts webhooks to only where
# webhook_allow allows it (nimbus/net_policy.py): servers that deliver to one set this.
LOCAL_WEBHOOKS = {"NIMBUS_WEBHOOK_ALLOW": "127.0.0.1/32"}


class Sink:
    """Collects JSON POST bodies; ``wait_until`` blocks on a condition, not a sleep.
    ``senders``: the address each record came from, in the same order; ``address``: where
    it listens (a test network's gateway, say)."""

    def __init__(self, fail_first: int = 0, address: str = "127.0.0.1") -> None:
        self.received: list[Any] = []
        self.senders: list[str] = []
        self.fail_first = fail_first
        self._cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink._cond:
                    if sink.fail_first > 0:
                        sink.fail_first -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    sink.received.append(json.loads(body))
                    sink.senders.append(self.client_address[0])
                    sink._cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # An async worker posts records 64 and more at once; the default backlog
            # of 5 would reset connections the dispatcher then has to retry.
            request_queue_size = 1024

        self.server = Server((address, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{address}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_until(self, predicate: Callable[[list[Any]], bool], timeout: float = 60) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.received), timeout):
                raise AssertionError(
                    f"sink condition not met within {timeout}s; got {len(self.received)} posts"
                )
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
