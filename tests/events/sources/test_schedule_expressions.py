"""EventBridge Scheduler's schedule expressions: AWS's documented examples, the
expressions AWS refuses (as recorded against AWS by LocalStack), time zones and DST as the
Scheduler guide describes them, and a cross-check with croniter where the syntaxes meet."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from croniter import croniter

from nimbus.events.sources.schedule_expressions import (
    At,
    InvalidExpression,
    Rate,
    Timing,
    parse,
    zone,
)


def ms(iso: str, tz: str = "UTC") -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=zone(tz)).timestamp() * 1000)


def fires(expression: str, after: str, count: int = 4, tz: str = "UTC", **kw: int) -> list[str]:
    """The next ``count`` ticks after ``after`` (wall-clock in ``tz``), as wall-clock times."""
    timing = Timing(parse(expression), zone(tz), kw.pop("anchor_ms", 0), **kw)
    out, at = [], ms(after, tz)
    for _ in range(count):
        tick = timing.next_after(at)
        if tick is None:
            break
        out.append(datetime.fromtimestamp(tick / 1000, zone(tz)).strftime("%Y-%m-%d %a %H:%M"))
        at = tick
    return out


# The examples of the EventBridge guide's cron table, each with what it says it does.
def test_every_day_at_10_utc() -> None:
    assert fires("cron(0 10 * * ? *)", "2024-05-01T10:00:00", 2) == [
        "2024-05-02 Thu 10:00", "2024-05-03 Fri 10:00"
    ]  # fmt: skip


def test_12_15_every_day() -> None:
    assert fires("cron(15 12 * * ? *)", "2024-05-01T00:00:00", 1) == ["2024-05-01 Wed 12:15"]


def test_6_pm_monday_to_friday() -> None:
    got = fires("cron(0 18 ? * MON-FRI *)", "2024-05-03T19:00:00", 3)  # a Friday evening
    assert got == ["2024-05-06 Mon 18:00", "2024-05-07 Tue 18:00", "2024-05-08 Wed 18:00"]


def test_8_am_first_day_of_month() -> None:
    got = fires("cron(0 8 1 * ? *)", "2024-05-15T00:00:00", 2)
    assert got == ["2024-06-01 Sat 08:00", "2024-07-01 Mon 08:00"]


def test_every_15_minutes() -> None:
    got = fires("cron(0/15 * * * ? *)", "2024-05-01T10:07:00", 4)
    assert got == [
        "2024-05-01 Wed 10:15", "2024-05-01 Wed 10:30", "2024-05-01 Wed 10:45",
        "2024-05-01 Wed 11:00",
    ]  # fmt: skip


def test_every_10_minutes_monday_to_friday() -> None:
    got = fires("cron(0/10 * ? * MON-FRI *)", "2024-05-03T23:45:00", 2)
    assert got == ["2024-05-03 Fri 23:50", "2024-05-06 Mon 00:00"]


def test_every_5_minutes_8_to_17_45_weekdays() -> None:
    got = fires("cron(0/5 8-17 ? * MON-FRI *)", "2024-05-06T17:50:00", 2)
    assert got == ["2024-05-06 Mon 17:55", "2024-05-07 Tue 08:00"]


def test_range_wrapping_midnight() -> None:
    got = fires("cron(0/30 22-2 ? * MON-FRI *)", "2024-05-06T21:59:00", 6)
    assert got == [
        "2024-05-06 Mon 22:00", "2024-05-06 Mon 22:30", "2024-05-06 Mon 23:00",
        "2024-05-06 Mon 23:30", "2024-05-07 Tue 00:00", "2024-05-07 Tue 00:30",
    ]  # fmt: skip


def test_day_of_week_counts_sunday_as_1() -> None:
    assert fires("cron(0 9 ? * 1 *)", "2024-05-01T00:00:00", 1) == ["2024-05-05 Sun 09:00"]
    assert fires("cron(0 9 ? * 7 *)", "2024-05-01T00:00:00", 1) == ["2024-05-04 Sat 09:00"]


def test_last_day_of_month_and_last_weekday() -> None:
    assert fires("cron(0 0 L * ? *)", "2024-02-01T00:00:00", 2) == [
        "2024-02-29 Thu 00:00", "2024-03-31 Sun 00:00"
    ]  # fmt: skip
    # August 2024 ends on a Saturday: the last weekday is Friday the 30th.
    assert fires("cron(0 0 LW * ? *)", "2024-08-01T00:00:00", 1) == ["2024-08-30 Fri 00:00"]


def test_nearest_weekday() -> None:
    # 3W: the weekday nearest the 3rd. Aug 3 2024 is a Saturday -> Friday the 2nd; Nov 3
    # 2024 a Sunday -> Monday the 4th; 1W on Saturday Jun 1 2024 -> Monday the 3rd (W
    # never leaves the month).
    assert fires("cron(0 0 3W * ? *)", "2024-08-01T00:00:00", 1) == ["2024-08-02 Fri 00:00"]
    assert fires("cron(0 0 3W * ? *)", "2024-11-01T00:00:00", 1) == ["2024-11-04 Mon 00:00"]
    assert fires("cron(0 0 1W * ? *)", "2024-05-31T00:00:00", 1) == ["2024-06-03 Mon 00:00"]


def test_nth_and_last_weekday_of_month() -> None:
    # 3#2: the second Tuesday; 6L: the last Friday (the guide's examples).
    assert fires("cron(0 8 ? * 3#2 *)", "2024-05-01T00:00:00", 2) == [
        "2024-05-14 Tue 08:00", "2024-06-11 Tue 08:00"
    ]  # fmt: skip
    assert fires("cron(15 10 ? * 6L 2024-2025)", "2024-05-01T00:00:00", 1) == [
        "2024-05-31 Fri 10:15"
    ]  # fmt: skip
    assert fires("cron(0 8 ? * MON#5 *)", "2024-05-01T00:00:00", 1) == ["2024-07-29 Mon 08:00"]


def test_names_lists_and_year() -> None:
    got = fires("cron(0 12 1 JAN,jul ? 2025)", "2024-01-01T00:00:00", 3)
    assert got == ["2025-01-01 Wed 12:00", "2025-07-01 Tue 12:00"]


@pytest.mark.parametrize(
    "expression",
    [  # accepted by AWS (LocalStack's recordings)
        "cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)",
        "cron(30-30 13-13 ? * 2,4,6 *)",
        "cron(1-31/30 1-1 ? * 1,7 *)",
        "cron(*/15 * * * ? *)",
        "cron(0-59/10 0-23/2 ? * * *)",
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(12 hours)",
        "rate(1 day)",
        "rate(7 days)",
        "at(2022-12-31T23:59:59)",
    ],
)
def test_valid(expression: str) -> None:
    parse(expression)


@pytest.mark.parametrize(
    "expression",
    [  # refused by AWS ("Invalid Schedule Expression ...", LocalStack's recordings)
        "cron(0 1 * * * *)",
        "cron(7 20 * * NOT *)",
        "cron(INVALID)",
        "cron(0 dummy ? * MON-FRI *)",
        "cron(71 8 1 * ? *)",
        "cron()",
        "rate(10 seconds)",
        "rate(10 years)",
        "rate()",
        "rate(10)",
        "rate(10 minutess)",
        "rate(foo minutes)",
        "rate(-10 minutes)",
        "rate( 10 minutes )",
        " rate(10 minutes)",
        "at(2021-12-31T23:59:59Z)",
        "at(2021-12-31)",
        # and what the syntax excludes
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "cron(0 10 ? * ? *)",
        "cron(0 10 * * ?)",
        "cron(0 24 * * ? *)",
        "cron(0 10 32 * ? *)",
        "cron(0 10 ? * 0 *)",
        "cron(0 10 ? * 8 *)",
        "cron(0 10 ? * MON/2 *)",
        "cron(0 10 * * ? 1969)",
        "cron(0 10 * * ? 2200)",
        "cron(0/0 10 * * ? *)",
        "cron(0 10 ? * 3#6 *)",
        "at(2024-02-30T10:00:00)",
    ],
)
def test_invalid(expression: str) -> None:
    with pytest.raises(InvalidExpression):
        parse(expression)


def test_timezones() -> None:
    assert zone(None).key == "UTC"
    assert zone("Europe/Paris").key == "Europe/Paris"
    with pytest.raises(ValueError):
        zone("Mars/Olympus_Mons")
    # 9:00 in Tokyo is 0:00 UTC.
    timing = Timing(parse("cron(0 9 * * ? *)"), zone("Asia/Tokyo"), 0)
    assert timing.next_after(ms("2024-05-01T12:00:00")) == ms("2024-05-02T00:00:00")


def test_spring_forward_skips_the_missing_time() -> None:
    # 2024-03-10 02:30 does not exist in New York: no fire that day.
    got = fires("cron(30 2 * * ? *)", "2024-03-09T03:00:00", 2, tz="America/New_York")
    assert got == ["2024-03-11 Mon 02:30", "2024-03-12 Tue 02:30"]


def test_fall_back_fires_the_repeated_time_once() -> None:
    timing = Timing(parse("cron(*/20 1 * * ? *)"), zone("America/New_York"), 0)
    ticks, at = [], ms("2024-11-03T00:59:00", "America/New_York")
    while (tick := timing.next_after(at)) is not None and tick < ms("2024-11-04T00:00:00"):
        ticks.append(tick)
        at = tick
    # 01:00, 01:20, 01:40 of the first pass (EDT); the second pass (EST) does not repeat.
    assert [datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M") for t in ticks] == [
        "05:00", "05:20", "05:40"
    ]  # fmt: skip


def test_rate_counts_from_its_anchor_and_ignores_dst() -> None:
    anchor = ms("2024-03-09T12:00:00", "America/New_York")
    timing = Timing(parse("rate(1 day)"), zone("America/New_York"), anchor)
    assert timing.next_after(anchor - 1) == anchor  # starts immediately
    assert timing.next_after(anchor) == anchor + 86_400_000  # 24 hours, across DST
    assert isinstance(timing.expression, Rate)


def test_start_and_end_dates() -> None:
    start, end = ms("2024-05-02T00:00:00"), ms("2024-05-03T10:00:00")
    got = fires("cron(0 10 * * ? *)", "2024-05-01T00:00:00", 5, start_ms=start, end_ms=end)
    assert got == ["2024-05-02 Thu 10:00", "2024-05-03 Fri 10:00"]
    rate = Timing(parse("rate(1 hour)"), zone("UTC"), start, start_ms=start)
    assert rate.next_after(0) == start


def test_at_fires_once_in_its_zone() -> None:
    timing = Timing(parse("at(2024-07-01T09:30:00)"), zone("Europe/Paris"), 0)
    assert isinstance(timing.expression, At)
    tick = timing.next_after(0)
    assert tick == ms("2024-07-01T07:30:00")
    assert tick is not None and timing.next_after(tick) is None


def test_latest_due_collapses_missed_ticks() -> None:
    timing = Timing(parse("cron(0/5 * * * ? *)"), zone("UTC"), 0)
    last = ms("2024-05-01T00:00:00")
    # A week later: one tick owed, the latest one.
    now = last + 7 * 86_400_000 + 7 * 60_000
    assert timing.latest_due(last, now) == last + 7 * 86_400_000 + 5 * 60_000
    assert timing.latest_due(last, last + 60_000) is None
    rate = Timing(parse("rate(10 minutes)"), zone("UTC"), last)
    assert rate.latest_due(last, last + 95 * 60_000) == last + 90 * 60_000


@pytest.mark.parametrize(
    ("eventbridge", "cron"),
    [
        ("cron(0/15 * * * ? *)", "0/15 * * * *"),
        ("cron(0 18 ? * MON-FRI *)", "0 18 * * 1-5"),
        ("cron(5,35 1-4 10 * ? *)", "5,35 1-4 10 * *"),
        ("cron(0 0 ? * 1,7 *)", "0 0 * * 0,6"),
        ("cron(0 12 ? JAN-MAR 2#1 *)", "0 12 * 1-3 1#1"),
        ("cron(30 6 L * ? *)", "30 6 L * *"),
    ],
)
def test_agrees_with_croniter(eventbridge: str, cron: str) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    reference = croniter(cron, start)
    timing = Timing(parse(eventbridge), zone("UTC"), 0)
    at = int(start.timestamp() * 1000)
    for _ in range(50):
        at = timing.next_after(at) or 0
        expected = reference.get_next(datetime)
        assert at == int(expected.timestamp() * 1000), expected
