"""The poller with a fake source and a scripted function: settling, partial failures,
retries, bisect, record age, on-failure, throttles, filters, scaling."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nimbus.errors import TooManyRequests
from nimbus.events.sources.poller import Poller
from nimbus.store.event_source_mappings import EventSourceMapping, MappingSettings
from tests.events.sources.fakes import FakeFunction, FakeSource, record

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def mapping(**settings: Any) -> EventSourceMapping:
    values: dict[str, Any] = {"batch_size": 10, "maximum_batching_window": 0}
    values.update(settings)
    return EventSourceMapping(
        uuid="u",
        function_name="f",
        qualifier=None,
        event_source_arn="src",
        kind="sqs",
        enabled=True,
        state="Creating",
        state_reason="USER_INITIATED",
        settings=MappingSettings(**values),
    )


def poller(source: FakeSource, fn: FakeFunction, **kwargs: Any) -> Poller:
    deliver = kwargs.pop("deliver", None)
    clock = kwargs.pop("clock", lambda: 10_000)
    max_loops = kwargs.pop("max_loops", 1)
    return Poller(
        mapping(**kwargs),
        source,
        fn,
        ARN,
        deliver=deliver,
        max_loops=max_loops,
        clock=clock,
        retry_base_s=0.001,
        sleep=lambda s: asyncio.sleep(0),
    )


async def test_queue_batch_success_and_item_failures() -> None:
    source = FakeSource([record(i) for i in range(4)])
    fn = FakeFunction(lambda recs: {"batchItemFailures": [{"itemIdentifier": "m2"}]})
    p = poller(source, fn, function_response_types=["ReportBatchItemFailures"])
    await p.process(source.waiting)
    assert fn.calls == [["m0", "m1", "m2", "m3"]]
    assert source.acked == ["m0", "m1", "m3"] and source.released == ["m2"]
    counters = p.stats.counters
    assert (counters["succeeded"], counters["failed"], counters["batches"]) == (3, 1, 1)


async def test_queue_function_error_releases_the_whole_batch() -> None:
    source = FakeSource()
    fn = FakeFunction(lambda recs: ("error", {"errorMessage": "boom"}))
    p = poller(source, fn, function_response_types=["ReportBatchItemFailures"])
    await p.process([record(1), record(2)])
    assert source.released == ["m1", "m2"] and source.acked == []
    assert p.last_result.startswith("PROBLEM")


async def test_invalid_item_failure_response_fails_the_batch() -> None:
    source = FakeSource()
    fn = FakeFunction(lambda recs: {"batchItemFailures": [{"foo": "notvalid"}]})
    p = poller(source, fn, function_response_types=["ReportBatchItemFailures"])
    await p.process([record(1), record(2)])
    assert source.released == ["m1", "m2"]


async def test_filtered_records_are_acked_without_invoking() -> None:
    source = FakeSource()
    fn = FakeFunction(lambda recs: None)
    p = poller(source, fn, filters=['{"body": {"n": [{"numeric": [">", 1]}]}}'])
    await p.process([record(1), record(2), record(3)])
    assert fn.calls == [["m2", "m3"]]
    assert sorted(source.acked) == ["m1", "m2", "m3"]
    assert p.stats.counters["filtered"] == 1


async def test_throttles_retry_without_spending_an_attempt() -> None:
    throttles = iter([TooManyRequests("Rate Exceeded.", "x"), TooManyRequests("R", "x")])

    def behaviour(recs: list[dict[str, Any]]) -> Any:
        return next(throttles, ("error", {}))

    source = FakeSource(queue_like=False)
    fn = FakeFunction(behaviour)
    p = poller(source, fn, maximum_retry_attempts=0)
    await p.process([record(1)])
    assert p.stats.counters["throttled"] == 2
    assert len(fn.calls) == 1  # the one real attempt, then given up (0 retries)
    assert source.acked == ["m1"] and p.stats.counters["discarded"] == 1


async def test_stream_retries_then_sends_to_on_failure() -> None:
    delivered: list[tuple[str, dict[str, Any]]] = []

    async def deliver(target: str, body: dict[str, Any]) -> bool:
        delivered.append((target, body))
        return True

    source = FakeSource(queue_like=False)
    fn = FakeFunction(lambda recs: ("error", {"errorMessage": "boom"}))
    p = poller(
        source, fn, deliver=deliver, maximum_retry_attempts=2, on_failure="https://hook.example/x"
    )
    await p.process([record(1), record(2)])
    assert len(fn.calls) == 3  # the first attempt and 2 retries
    assert source.acked == ["m1", "m2"]
    ((target, body),) = delivered
    assert target == "https://hook.example/x"
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 3
    assert body["StreamBatchInfo"]["batchSize"] == 2
    assert p.stats.counters["on_failure"] == 2


async def test_stream_bisect_isolates_the_bad_record() -> None:
    def behaviour(recs: list[dict[str, Any]]) -> Any:
        bad = any(r["messageId"] == "m2" for r in recs)
        return ("error", {}) if bad else None

    source = FakeSource(queue_like=False)
    fn = FakeFunction(behaviour)
    p = poller(source, fn, maximum_retry_attempts=1, bisect_batch_on_function_error=True)
    await p.process([record(i) for i in range(4)])
    # [0,1,2,3] fails -> [0,1] ok, [2,3] fails again (attempt 2 > 1 retry): given up.
    assert fn.calls[0] == ["m0", "m1", "m2", "m3"]
    assert ["m0", "m1"] in fn.calls and ["m2", "m3"] in fn.calls
    assert source.acked[:2] == ["m0", "m1"]
    assert p.stats.counters["discarded"] == 2


async def test_stream_item_failures_checkpoint() -> None:
    answers = iter([{"batchItemFailures": [{"itemIdentifier": "m2"}]}, None])
    source = FakeSource(queue_like=False)
    fn = FakeFunction(lambda recs: next(answers))
    p = poller(
        source, fn, function_response_types=["ReportBatchItemFailures"], maximum_retry_attempts=-1
    )
    await p.process([record(i) for i in range(4)])
    assert fn.calls == [["m0", "m1", "m2", "m3"], ["m2", "m3"]]
    assert source.acked == ["m0", "m1", "m2", "m3"]


async def test_stream_records_past_max_age_go_to_on_failure() -> None:
    delivered: list[dict[str, Any]] = []

    async def deliver(target: str, body: dict[str, Any]) -> bool:
        delivered.append(body)
        return True

    source = FakeSource(queue_like=False)
    fn = FakeFunction(lambda recs: None)
    now = 1_000_000
    p = poller(
        source,
        fn,
        deliver=deliver,
        maximum_record_age=60,
        on_failure="https://h/x",
        clock=lambda: now,
    )
    await p.process([record(1, ts=now - 61_000), record(2, ts=now - 1_000)])
    assert fn.calls == [["m2"]]
    assert delivered[0]["requestContext"]["condition"] == "RecordAgeExceeded"
    assert sorted(source.acked) == ["m1", "m2"]


async def test_failed_delivery_is_retried_until_it_lands() -> None:
    attempts: list[int] = []

    async def deliver(target: str, body: dict[str, Any]) -> bool:
        attempts.append(1)
        return len(attempts) >= 3

    source = FakeSource(queue_like=False)
    fn = FakeFunction(lambda recs: ("error", {}))
    p = poller(source, fn, deliver=deliver, maximum_retry_attempts=0, on_failure="https://h/x")
    await p.process([record(1)])
    assert len(attempts) == 3 and source.acked == ["m1"]


async def test_run_delivers_everything_once_in_batches_and_stops() -> None:
    source = FakeSource([record(i) for i in range(95)])
    fn = FakeFunction(lambda recs: None)
    p = poller(source, fn, max_loops=3)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.opened.wait(), 2)
    for _ in range(200):
        if len(source.acked) == 95:
            break
        await asyncio.sleep(0.01)
    p.stop()
    await asyncio.wait_for(task, 5)
    seen = [i for call in fn.calls for i in call]
    assert sorted(seen) == sorted(f"m{i}" for i in range(95))
    assert len(seen) == len(set(seen))
    assert all(len(call) <= 10 for call in fn.calls)
    assert source.closed


async def test_payload_is_lambdas_records_event() -> None:
    seen: list[Any] = []

    def behaviour(recs: list[dict[str, Any]]) -> Any:
        seen.append(recs)
        return None

    source = FakeSource()
    p = poller(source, FakeFunction(behaviour))
    await p.process([record(1, {"a": 1})])
    assert seen == [[{"messageId": "m1", "body": json.dumps({"a": 1})}]]


class AckFailsOnce(FakeSource):
    """A source whose first ack fails (a broker blip, a busy store)."""

    def __init__(self, records: list, queue_like: bool) -> None:
        super().__init__(records, queue_like)
        self.failed = False

    async def ack(self, records: list) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("broker went away")
        await super().ack(records)


async def _run_until(p: Poller, done: Any) -> None:
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.opened.wait(), 2)
    for _ in range(500):
        if done():
            break
        await asyncio.sleep(0.01)
    p.stop()
    await asyncio.wait_for(task, 5)


async def test_a_failing_ack_hands_a_queue_batch_back_and_the_loop_goes_on() -> None:
    source = AckFailsOnce([record(1), record(2)], queue_like=True)
    fn = FakeFunction(lambda recs: None)
    p = poller(source, fn)
    source_later = [record(3)]

    def done() -> bool:
        if source.failed and source_later:
            source.add(*source_later)
            source_later.clear()
        return "m3" in source.acked

    await _run_until(p, done)
    assert source.released == ["m1", "m2"]  # redelivered by the queue later
    assert "m3" in source.acked  # the loop survived the failure
    assert "processing a batch failed" in (p.stats.last_error or "")


async def test_a_failing_ack_retries_a_stream_batch_first_and_in_order() -> None:
    source = AckFailsOnce([record(1), record(2)], queue_like=False)
    fn = FakeFunction(lambda recs: None)
    p = poller(source, fn, starting_position="TRIM_HORIZON")
    await _run_until(p, lambda: source.acked == ["m1", "m2"])
    assert fn.calls == [["m1", "m2"], ["m1", "m2"]]
    assert source.acked == ["m1", "m2"] and source.released == []


class OrderedSource(FakeSource):
    """A FIFO queue: records must not overtake the ones that failed before them."""

    ordered = True


async def test_a_failed_fifo_batch_takes_the_records_waiting_behind_it_back() -> None:
    big = "x" * (2_500_000)  # two fill a batch (6 MB): the other two wait in the batcher
    source = OrderedSource([record(i, body=big) for i in range(4)])
    fn = FakeFunction(lambda recs: ("error", {"errorMessage": "boom"}))
    p = poller(source, fn, batch_size=10)
    await _run_until(p, lambda: len(source.released) >= 4)
    # m0, m1 failed; m2, m3 were received with them: they go back too, unrun, so they
    # never overtake m0 and m1.
    assert fn.calls == [["m0", "m1"]]
    assert sorted(source.released) == ["m0", "m1", "m2", "m3"]
