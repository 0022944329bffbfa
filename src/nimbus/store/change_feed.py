"""Function changes committed by other servers of one installation, heard through
PostgreSQL's LISTEN/NOTIFY.

Every server caches what it resolves (a function's versions, aliases, configuration)
and keeps warm environments per deployment; its own writes drop what they change
(``FunctionStore.on_change``). Another server's writes would not: code updated through
one front end kept running its old package on the others, and on worker nodes, forever.
So on PostgreSQL each write transaction about a function also sends a notification
(delivered at commit, only if it commits), and every process listens on a connection of
its own and tells its listeners, as if the change were its own. HTTP APIs' route tables
are cached the same way and travel on a channel of their own. A notification carries
the installation's schema (installations may share a database) and the sending
process's token (a process hears its own writes already).

A listener that loses its connection may have missed changes, so once reconnected it
tells its listeners that every function changed: caches refill, environments whose
deployment is unchanged stay.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, text

from nimbus.store.database import PG_TIMEOUTS, libpq_url

log = logging.getLogger("nimbus.store.change_feed")

FUNCTIONS = "nimbus_functions"  # subject: a function's name
HTTP_APIS = "nimbus_http_apis"  # subject: an HTTP API's id
_RETRY_S = 1.0
# This process's notifications, which it hears through its own listeners already.
PROCESS_TOKEN = uuid.uuid4().hex[:12]


def notify(conn: Connection, channel: str, subject: str) -> None:
    """Tell the other processes of the installation, when ``conn``'s transaction
    commits, that ``subject`` changed."""
    conn.execute(text("SELECT pg_notify(:channel, current_schema() || ' ' || :token || ' ' "
                      "|| :subject)"),
                 {"channel": channel, "token": PROCESS_TOKEN, "subject": subject})


class ChangeFeed:
    """Hears other processes' changes on the channels subscribed to."""

    def __init__(self, url: str) -> None:
        self._conninfo = make_conninfo(libpq_url(url), **PG_TIMEOUTS)
        # channel -> (tell of one subject, every subject to tell of after a lost connection)
        self._subscribers: dict[str, tuple[Callable[[str], object],
                                           Callable[[], Iterable[str]]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, channel: str, changed: Callable[[str], object],
                  every: Callable[[], Iterable[str]]) -> None:
        """Before ``start``: call ``changed(subject)`` for each change heard on ``channel``."""
        self._subscribers[channel] = (changed, every)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="nimbus-change-feed",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (within the second the wait for notifications lasts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    schema = conn.execute("SELECT current_schema()").fetchone()
                    namespace = schema[0] if schema else ""
                    for channel in self._subscribers:
                        conn.execute(f"LISTEN {channel}")
                    if not first:  # what happened while deaf is unknown
                        for changed, every in self._subscribers.values():
                            for subject in every():
                                changed(subject)
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.channel, note.payload, namespace)
            except Exception as exc:  # whatever it was, the feed must not go deaf for good
                if self._stop.is_set():
                    return
                log.warning("listening for other servers' changes: %s (retrying; caches "
                            "are dropped once it answers again)", exc)
                self._stop.wait(_RETRY_S)

    def _heard(self, channel: str, payload: str, namespace: str) -> None:
        schema, token, subject = [*payload.split(" ", 2), "", ""][:3]
        found = self._subscribers.get(channel)
        if found is None or schema != namespace or token == PROCESS_TOKEN or not subject:
            return
        try:
            found[0](subject)
        except Exception:  # a listener's failure must not deafen the feed
            log.exception("a listener failed on %s's change (%s)", subject, channel)
