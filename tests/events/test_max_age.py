"""MaximumEventAgeInSeconds, with the dispatcher's clock injected (``FakeClock``): no
test waits out a real minute.

A real SQLite queue and stores; the invoker is a stand-in whose answers the test
scripts (success, function error, or TooManyRequests: a throttle). Covers: a throttled
event waits in the queue and is retried without spending an attempt, runs at exactly
its maximum age, and once older goes to the dead-letter store as EventAgeExceeded with
attempts 0 (the assertions of the live-server test that waited 60 s); an event within
its age runs normally, also after throttles; an event already too old never runs; a
retried event keeps its attempts when it ages out; the default of six hours; the age
setting of the event's own qualifier; and the OnFailure record of an aged-out event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.invocation.invoker import InvokeResult
from nimbus.models import EventInvokeConfig
from tests.fakes import (
    Call,
    Dispatching,
    create_function,
    fail,
    open_dispatching,
    publish,
    succeed,
    throttle,
)

FN = "arn:aws:lambda:us-east-1:000000000000:function"
MINUTE = 60_000
SIX_HOURS = 6 * 3600 * 1000


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Dispatching]:
    parts = await open_dispatching(tmp_path / "data", throttle_delay_seconds=0.01)
    for name in ("worker", "sink"):
        create_function(parts.stores.functions, name)
    yield parts
    await parts.close()


def max_age(
    parts: Dispatching, seconds: int | None, qualifier: str = "$LATEST", **more: Any
) -> None:
    config = EventInvokeConfig("worker", qualifier, maximum_event_age=seconds, **more)
    parts.stores.event_configs.put(config, merge=False)


async def test_a_throttled_event_waits_then_ages_out_to_dead_letters(parts: Dispatching) -> None:
    max_age(parts, 60)
    parts.invoker.script("worker", throttle())
    request_id = await parts.dispatcher.enqueue("worker", None, b'{"id": "too-late"}')
    await parts.dispatcher.start()
    for _ in range(2):  # throttled, back in the queue, tried again
        assert (await parts.invoker.next_call()).request_id == request_id
    parts.clock.advance(MINUTE)  # exactly the maximum age: not older than it yet
    assert (await parts.invoker.next_call()).request_id == request_id
    parts.clock.advance(1)
    letter = await parts.dead_letters.next()
    assert letter.request_id == request_id and letter.condition == "EventAgeExceeded"
    assert letter.attempts == 0  # throttles spend no attempt
    assert letter.failed_ms - letter.enqueued_ms >= MINUTE
    assert letter.failed_ms == parts.clock.now
    assert (letter.queue, letter.function_name, letter.qualifier) == ("nimbus", "worker", None)
    assert letter.payload == '{"id": "too-late"}' and letter.error is None
    await parts.settle()
    assert len(parts.invoker.made) == 3  # never run again once too old
    assert (await parts.queue.stats()).depth == 0
    counters = parts.dispatcher.counters
    assert (counters["throttled"], counters["failed"], counters["dead_lettered"]) == (3, 1, 1)
    assert parts.stores.dead_letters.list(function="worker")[0].request_id == request_id


async def test_an_event_within_its_max_age_runs_normally(parts: Dispatching) -> None:
    max_age(parts, 60)
    parts.invoker.script("worker", succeed(b'"done"'))
    request_id = await parts.dispatcher.enqueue("worker", None, b"{}")
    parts.clock.advance(MINUTE - 1)
    await parts.dispatcher.start()
    assert (await parts.invoker.next_call()).request_id == request_id
    await parts.settle()
    assert parts.dispatcher.counters["succeeded"] == 1
    assert parts.dead_letters.added.empty()
    assert (await parts.queue.stats()).depth == 0


async def test_a_throttled_event_that_gets_its_turn_in_time_runs(parts: Dispatching) -> None:
    max_age(parts, 60)
    parts.invoker.script("worker", throttle(), throttle(), succeed())
    await parts.dispatcher.enqueue("worker", None, b"{}")
    await parts.dispatcher.start()
    await parts.invoker.next_call()
    parts.clock.advance(30_000)
    await parts.invoker.next_call()
    parts.clock.advance(29_000)
    await parts.invoker.next_call()
    await parts.settle()
    counters = parts.dispatcher.counters
    assert (counters["throttled"], counters["succeeded"], counters["failed"]) == (2, 1, 0)
    assert parts.dead_letters.added.empty()


async def test_an_event_already_too_old_never_runs(parts: Dispatching) -> None:
    max_age(parts, 60)
    request_id = await parts.dispatcher.enqueue("worker", None, b"{}")
    parts.clock.advance(MINUTE + 1)
    await parts.dispatcher.start()
    letter = await parts.dead_letters.next()
    assert (letter.request_id, letter.condition, letter.attempts) == (
        request_id, "EventAgeExceeded", 0
    )  # fmt: skip
    await parts.settle()
    assert parts.invoker.made == []


async def test_a_retried_event_keeps_its_attempts_when_it_ages_out(parts: Dispatching) -> None:
    max_age(parts, 60, maximum_retry_attempts=2)
    failing = fail()

    def slow_failure(call: Call) -> InvokeResult:
        parts.clock.advance(MINUTE + 1)  # the run (and the wait for the retry) took a minute
        return failing(call)

    parts.invoker.script("worker", slow_failure)
    await parts.dispatcher.enqueue("worker", None, b"{}")
    await parts.dispatcher.start()
    letter = await parts.dead_letters.next()
    assert (letter.condition, letter.attempts) == ("EventAgeExceeded", 1)
    await parts.settle()
    assert len(parts.invoker.made) == 1


async def test_the_default_max_age_is_six_hours(parts: Dispatching) -> None:
    old = await parts.dispatcher.enqueue("worker", None, b'"old"')
    parts.clock.advance(1)
    fresh = await parts.dispatcher.enqueue("worker", None, b'"fresh"')
    parts.clock.advance(SIX_HOURS)  # fresh: exactly six hours old; old: one ms more
    await parts.dispatcher.start()
    letter = await parts.dead_letters.next()
    assert (letter.request_id, letter.condition) == (old, "EventAgeExceeded")
    await parts.settle()
    assert [call.request_id for call in parts.invoker.made] == [fresh]


async def test_the_age_limit_is_the_one_of_the_events_qualifier(parts: Dispatching) -> None:
    publish(parts.stores.functions, "worker", memory_size=256)  # version 1
    max_age(parts, 60)  # for $LATEST only
    max_age(parts, 120, qualifier="1")
    latest = await parts.dispatcher.enqueue("worker", None, b"{}")
    version = await parts.dispatcher.enqueue("worker", "1", b"{}")
    parts.clock.advance(2 * MINUTE)
    await parts.dispatcher.start()
    letter = await parts.dead_letters.next()
    assert letter.request_id == latest
    call = await parts.invoker.next_call()
    assert (call.request_id, call.qualifier) == (version, "1")
    await parts.settle()
    assert parts.dead_letters.added.empty()


async def test_an_aged_out_event_goes_to_on_failure(parts: Dispatching) -> None:
    max_age(parts, 60, on_failure=f"{FN}:sink")
    request_id = await parts.dispatcher.enqueue("worker", None, b'{"n": 1}')
    parts.clock.advance(MINUTE + 1)
    await parts.dispatcher.start()
    call = await parts.invoker.next_call()  # the record, queued for the destination
    assert call.name == "sink"
    record = json.loads(call.payload)
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{FN}:worker:$LATEST",
        "condition": "EventAgeExceeded",
        "approximateInvokeCount": 0,
    }
    assert record["requestPayload"] == {"n": 1}
    assert "responsePayload" not in record and "functionError" not in record["responseContext"]
    await parts.settle()
    assert parts.dead_letters.added.empty()  # delivered to OnFailure instead
    assert [c.name for c in parts.invoker.made] == ["sink"]
