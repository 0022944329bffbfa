"""Nothing accepted is lost: kill -9 the server while thousands of async invokes
arrive, restart it, and prove every event answered 202 ran at least once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sink import LOCAL_WEBHOOKS, Sink

pytestmark = pytest.mark.sandbox

TOTAL = 3000
KILL_AFTER = 1200
SENDERS = 12


class Senders:
    """Threads that send TOTAL async invokes and sort them by what the server answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accepted: set[int] = set()
        self.unanswered: set[int] = set()  # the request may or may not have been committed
        self.enough = threading.Event()  # KILL_AFTER accepted
        self._lock = threading.Lock()
        per = TOTAL // SENDERS
        self._threads = [
            threading.Thread(target=self._send, args=(range(k * per, (k + 1) * per),))
            for k in range(SENDERS)
        ]
        for t in self._threads:
            t.start()

    def _send(self, ids: range) -> None:
        with httpx.Client(timeout=30) as http:
            for i in ids:
                try:
                    r = http.post(
                        self.url,
                        content=json.dumps({"id": i}),
                        headers={"X-Amz-Invocation-Type": "Event"},
                    )
                except httpx.HTTPError:
                    with self._lock:
                        self.unanswered.add(i)
                    return  # the server is gone; stop sending
                with self._lock:
                    if r.status_code == 202:
                        self.accepted.add(i)
                        if len(self.accepted) >= KILL_AFTER:
                            self.enough.set()
                    else:
                        self.unanswered.add(i)

    def join(self) -> None:
        for t in self._threads:
            t.join()


def recording_function(server: NimbusProcess, sink: Sink) -> str:
    """Create ``rec``, which sends each event it ran to the sink; returns its invoke URL."""
    lam = server.client()
    lam.create_function(
        FunctionName="rec",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})},
    )
    lam.put_function_event_invoke_config(
        FunctionName="rec", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
    )
    return f"{server.endpoint}/2015-03-31/functions/rec/invocations"


def alive(pid: int) -> bool:
    """Running, i.e. neither gone nor a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ran(records: list) -> set[int]:
    return {r["requestPayload"]["id"] for r in records}


def test_kill_9_loses_no_accepted_event(tmp_path: Path, sink: Sink) -> None:
    env = {"NIMBUS_RETRY_BASE_SECONDS": "0.05", **LOCAL_WEBHOOKS}
    with live_server(tmp_path / "data", env) as server:
        senders = Senders(recording_function(server, sink))
        assert senders.enough.wait(120), "the server accepted too few events"
        workers = server.workers()
        server.stop(signal.SIGKILL)
        senders.join()
        # The async workers die with the server (PR_SET_PDEATHSIG), or their sandboxes
        # would keep running old leases beside the restarted server's.
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "an async worker outlived the server"
            time.sleep(0.05)
        accepted, unanswered = senders.accepted, senders.unanswered
        assert KILL_AFTER <= len(accepted) < TOTAL, len(accepted)

        server.start()  # same data dir: the queue must still hold what was accepted
        wanted = set(accepted)
        records = sink.wait_until(lambda rs: wanted <= ran(rs), timeout=180)
        executed = ran(records)
        assert wanted <= executed  # every 202 ran at least once
        # Anything else that ran was in flight at the kill (committed, answer lost).
        assert executed - wanted <= unanswered
        assert len(executed - wanted) <= SENDERS


def test_kill_9_of_the_async_worker_loses_no_accepted_event(tmp_path: Path, sink: Sink) -> None:
    """The worker dies mid-stream; its leases (visible only after 960 s otherwise) come
    back at once and a new worker runs them, while the server keeps accepting."""
    with live_server(tmp_path / "data", {"NIMBUS_ASYNC_WORKERS": "1", **LOCAL_WEBHOOKS}) as server:
        senders = Senders(recording_function(server, sink))
        assert senders.enough.wait(120), "the server accepted too few events"
        for _ in range(100):  # started with the server, but maybe not yet visible
            if workers := server.workers():
                break
            time.sleep(0.1)
        (worker,) = workers
        os.kill(worker, signal.SIGKILL)
        senders.join()
        assert not senders.unanswered  # the server never stopped answering
        assert len(senders.accepted) == TOTAL
        records = sink.wait_until(lambda rs: senders.accepted <= ran(rs), timeout=180)
        assert senders.accepted == ran(records)
        (restarted,) = server.workers()
        assert restarted != worker
