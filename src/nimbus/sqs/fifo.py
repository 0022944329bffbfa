"""FIFO queues: message group ordering and deduplication.

Within a message group messages are delivered in the order they were sent, and a group
with a message in flight (received, not yet deleted, visibility not expired) delivers
nothing else until that message is deleted or visible again. Other groups go on.

A message whose MessageDeduplicationId (or, with ContentBasedDeduplication, the SHA-256
of its body) was sent in the last 5 minutes is accepted but not queued again: the send
answers the first message's id. DeduplicationScope=messageGroup keeps one window per
group instead of one per queue.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nimbus.errors import SqsInvalidParameterValue, SqsMissingParameter

DEDUP_WINDOW_MS = 5 * 60 * 1000
_FIFO_ID = re.compile(r"[0-9a-zA-Z!\"#$%&'()*+,./:;<=>?@\[\\\]^_`{|}~-]{1,128}")


def check_id(value: str | None, parameter: str) -> None:
    """MessageGroupId / MessageDeduplicationId as SQS allows them."""
    if value is None:
        return
    if not _FIFO_ID.fullmatch(value):
        raise SqsInvalidParameterValue(
            f"Value {value} for parameter {parameter} is invalid. Reason: {parameter} can only "
            "include alphanumeric and punctuation characters. 1 to 128 in length."
        )


def dedup_id_for(body: str, dedup_id: str | None, group_id: str | None, content_based: bool) -> str:
    """The id a FIFO message is deduplicated by, or SQS's refusal when it has none."""
    if group_id is None:
        raise SqsMissingParameter("The request must contain the parameter MessageGroupId.")
    if dedup_id is not None:
        return dedup_id
    if not content_based:
        raise SqsInvalidParameterValue(
            "The queue should either have ContentBasedDeduplication enabled or "
            "MessageDeduplicationId provided explicitly"
        )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def sequence_number(n: int) -> str:
    """SQS's SequenceNumber: a 20-digit, ever-increasing decimal string."""
    return f"{n:020d}"


@dataclass(frozen=True)
class Candidate:
    """A message of a FIFO queue, as the receive sees it."""

    row: int
    group_id: str
    visible: bool  # visible_ms <= now
    in_flight: bool  # received and its visibility timeout not over


def pick(candidates: Iterable[Candidate], wanted: int) -> list[int]:
    """Rows to deliver, in send order: from each group the messages before its first
    one that is not visible, and nothing from a group with a message in flight."""
    ordered = sorted(candidates, key=lambda c: c.row)
    blocked = {c.group_id for c in ordered if c.in_flight}
    chosen: list[int] = []
    for c in ordered:
        if len(chosen) >= wanted:
            break
        if c.group_id in blocked:
            continue
        if not c.visible:
            blocked.add(c.group_id)  # delayed: later messages of the group wait for it
            continue
        chosen.append(c.row)
    return chosen
