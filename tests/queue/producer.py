"""Child process for the kill -9 test: puts events from concurrent tasks and prints
``<id> <n>`` for each one only after its put returned (the queue's acknowledgement).

    python -m tests.queue.producer BACKEND LOCATION FIRST COUNT PRODUCERS

puts events number FIRST to FIRST + COUNT - 1.
"""

from __future__ import annotations

import asyncio
import sys

from nimbus.queue.backend import QueuedEvent
from tests.queue.backends import QueueSpec


def crash_event(n: int) -> QueuedEvent:
    """Event number n, as the producer sends it and the test recognises it."""
    payload = f'{{"n": {n}}}'.encode() + b"." * (n % 700)
    return QueuedEvent("crash", None, payload, f"req-{n}")


async def main(spec: QueueSpec, first: int, count: int, producers: int) -> None:
    queue = spec.make()
    await queue.open()

    async def producer(k: int) -> None:
        for n in range(first + k, first + count, producers):
            event_id = await queue.put(crash_event(n))
            sys.stdout.write(f"{event_id} {n}\n")
            sys.stdout.flush()

    await asyncio.gather(*(producer(k) for k in range(producers)))
    await queue.close()


if __name__ == "__main__":
    name, location, first, count, producers = sys.argv[1:]
    asyncio.run(main(QueueSpec(name, location), int(first), int(count), int(producers)))
