"""The order `nimbus deploy` applies a stack's resources in: dependencies first, what
starts events by itself (schedules, rules, event source mappings) and what depends on it
after everything else, the template's order otherwise; removal the other way round."""

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


def test_what_depends_on_an_event_starter_waits_with_it() -> None:
    # A rule whose permission names it (GetAtt Rule.Arn), before the EventInvokeConfig in
    # the template: the permission must not pull the rule in ahead of that config.
    deps = {"Fn": [], "Rule": ["Fn"], "Permission": ["Fn", "Rule"], "Config": ["Fn"]}
    assert _order(deps, last={"Rule"}) == ["Fn", "Config", "Rule", "Permission"]


def test_a_circle_is_refused_with_its_path() -> None:
    with pytest.raises(DeployError, match="A -> B -> A"):
        _order({"A": ["B"], "B": ["A"]}, last={"A"})
