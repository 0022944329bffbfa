"""Function changes committed by other servers of one installation, heard through
PostgreSQL's LISTEN/NOTIFY.

Every server caches what it resolves (a function's versions, aliases, configuration)
and keeps warm environments per deployment; its own writes drop what they change
(``FunctionStore.on_change``). Another server's writes would not: code updated through
one front end kept running its old package on the others, and on worker nodes, forever.
So on PostgreSQL each write transaction about a function also sends a notification
(delivered at commit, only if it commits), and every process listens on a connection of
its own and tells its listeners, as if the change were its own. A notification carries
the installation's schema (installations may share a database) and the sending store's
token (a process hears its own writes already).

A listener that loses its connection may have missed changes, so once reconnected it
tells its listeners that every function changed: caches refill, environments whose
deployment is unchanged stay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg
from psycopg.conninfo import make_conninfo

from nimbus.store.database import PG_TIMEOUTS, libpq_url

log = logging.getLogger("nimbus.store.change_feed")

CHANNEL = "nimbus_functions"
_RETRY_S = 1.0



class ChangeFeed:
    """Hears other processes' function changes (``token``: this process's own, skipped)."""

    def __init__(self, url: str, token: str, changed: Callable[[str], object],
                 every_function: Callable[[], Iterable[str]]) -> None:
        self._conninfo = make_conninfo(libpq_url(url), **PG_TIMEOUTS)
        self.changed = changed
        self.every_function = every_function
        self.token = token
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:  # what happened while deaf is unknown
                        for name in self.every_function():
                            self.changed(name)
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload, namespace)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("listening for other servers' function changes: %s "
                            "(retrying; caches are dropped once it answers again)", exc)
                self._stop.wait(_RETRY_S)

    def _heard(self, payload: str, namespace: str) -> None:
        schema, token, name = [*payload.split(" ", 2), "", ""][:3]
        if schema != namespace or token == self.token or not name:
            return
        try:
            self.changed(name)
        except Exception:  # a listener's failure must not deafen the feed
            log.exception("a listener failed on function %s's change", name)
