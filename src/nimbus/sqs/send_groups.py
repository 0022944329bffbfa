"""Group commit of concurrent sends: while one group is being written, the sends that
arrive wait together and go as the next group, in one store transaction and one trip
to a worker thread.

SQLite has one writer at a time, so concurrent sends (SendMessageBatch from several
clients) queue for the write lock anyway; taking them together spends one thread hop,
one transaction and one commit per group instead of per send. Each send is answered
only when the commit of its group has returned: what was acknowledged is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from nimbus.errors import SqsError
from nimbus.sqs.message_store import SendOutcome
from nimbus.sqs.messages import Outgoing, SendResult
from nimbus.threads import blocking

Commit = Callable[[Sequence[tuple[str, Sequence[Outgoing]]]], list[SendOutcome]]
MAX_GROUP = 64  # sends per transaction: bounds the latency a large group adds


class SendGroups:
    """Gathers sends for ``commit`` (``MessageStore.send_group``), one group at a time."""

    def __init__(self, commit: Commit) -> None:
        self.commit = commit
        self._pending: list[tuple[str, Sequence[Outgoing], asyncio.Future[SendOutcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def send(self, name: str, entries: Sequence[Outgoing]) -> list[SendResult | SqsError]:
        """The send's results once its group is committed."""
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((name, entries, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _write(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            try:
                outcomes = await blocking(self.commit, [(n, e) for n, e, _ in group])
            except BaseException as exc:  # the worker thread itself failed, or we stop
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(
                            exc if isinstance(exc, Exception) else asyncio.CancelledError()
                        )
                if not isinstance(exc, Exception):
                    for _, _, future in self._pending:
                        future.cancel()
                    self._pending = []
                    raise
                continue
            for (_, _, future), outcome in zip(group, outcomes, strict=True):
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_result(outcome)
