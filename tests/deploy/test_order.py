"""The order `nimbus deploy` applies a stack's resources in: dependencies first, what
starts events by itself (schedules, rules, event source mappings) after everything it
does not precede, the template's order otherwise; removal the other way round."""

from __future__ import annotations

import pytest

from nimbus.deploy.problems import DeployError
from nimbus.deploy.stack import _order


def test_what_starts_events_comes_after_all_the_rest_in_template_order() -> None:
    # A SAM function with a ScheduleV2 event: the schedule needs the function (and its
    # role); the EventInvokeConfig, which it does not reference, must still be in place
    # before the schedule's first tick, which fires at once.
    deps = {
        "Tick": ["Fn", "TickRole"],
        "Fn": ["FnRole"],
        "Mapping": ["Fn", "Jobs"],
        "FnRole": [],
        "TickRole": [],
        "Jobs": [],
        "FnEventInvokeConfig": ["Fn"],
    }
    order = _order(deps, last={"Tick", "Mapping"})
    assert order == ["FnRole", "Fn", "TickRole", "Jobs", "FnEventInvokeConfig",
                     "Tick", "Mapping"]  # fmt: skip
    assert _order(deps) == ["FnRole", "Fn", "TickRole", "Tick", "Jobs", "Mapping",
                            "FnEventInvokeConfig"]  # fmt: skip


def test_a_resource_that_depends_on_an_event_starter_still_follows_it() -> None:
    order = _order({"Rule": [], "Permission": ["Rule"], "Queue": []}, last={"Rule"})
    assert order == ["Rule", "Permission", "Queue"]


def test_a_circle_is_refused_with_its_path() -> None:
    with pytest.raises(DeployError, match="B -> A -> B"):
        _order({"A": ["B"], "B": ["A"]}, last={"A"})
