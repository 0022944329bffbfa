"""The lifecycle hooks' bus: typed subscriptions, nothing built when nobody listens, a
failing observer never breaks the emitter."""

from __future__ import annotations

import logging
import timeit

import pytest

from nimbus.observe.hooks import (
    AsyncEventReceived,
    Hooks,
    InvocationFinished,
    InvocationStarted,
)


def started(request_id: str = "r1") -> InvocationStarted:
    return InvocationStarted("fn", "live", "1", request_id)


def test_subscribers_get_the_events_of_their_type_only() -> None:
    hooks = Hooks()
    seen: list[object] = []
    hooks.subscribe(InvocationStarted, seen.append)
    assert hooks.wants(InvocationStarted)
    assert not hooks.wants(InvocationFinished)
    hooks.emit(started())
    hooks.emit(AsyncEventReceived("fn", None, "r2"))  # nobody listens: dropped
    assert seen == [started()]


def test_several_subscribers_run_in_order_and_can_leave() -> None:
    hooks = Hooks()
    order: list[str] = []

    def first(e: InvocationStarted) -> None:
        order.append("first:" + e.request_id)

    def second(e: InvocationStarted) -> None:
        order.append("second:" + e.request_id)

    hooks.subscribe(InvocationStarted, first)
    hooks.subscribe(InvocationStarted, second)
    hooks.emit(started("a"))
    hooks.unsubscribe(InvocationStarted, first)
    hooks.emit(started("b"))
    hooks.unsubscribe(InvocationStarted, second)
    assert not hooks.wants(InvocationStarted)
    assert order == ["first:a", "second:a", "second:b"]


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = Hooks()
    seen: list[object] = []

    def broken(_: InvocationStarted) -> None:
        raise RuntimeError("observer bug")

    hooks.subscribe(InvocationStarted, broken)
    hooks.subscribe(InvocationStarted, seen.append)
    with caplog.at_level(logging.ERROR, "nimbus.observe.hooks"):
        hooks.emit(started())  # does not raise
    assert seen == [started()]
    assert "InvocationStarted subscriber failed" in caplog.text


def test_records_are_immutable() -> None:
    event = started()
    with pytest.raises(AttributeError):
        event.request_id = "other"  # type: ignore[misc]


def test_asking_costs_a_dict_lookup_when_nobody_listens() -> None:
    hooks = Hooks()
    # The emitters' guard: well under a microsecond (generous bound for a shared host).
    per_call = min(timeit.repeat(lambda: hooks.wants(InvocationFinished), number=20_000,
                                 repeat=5)) / 20_000
    assert per_call < 2e-6
