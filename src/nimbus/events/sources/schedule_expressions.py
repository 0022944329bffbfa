"""EventBridge Scheduler's schedule expressions and when they fire.

Three kinds, as AWS documents them (Scheduler user guide, "Schedule types"):

- ``cron(minutes hours day-of-month month day-of-week year)``: six fields; ``,`` lists,
  ``-`` ranges (a range may wrap, ``22-2``), ``*``, ``/`` increments (not in
  day-of-week), names (``JAN``-``DEC``, ``SUN``-``SAT``, any case), ``?`` in exactly one
  of day-of-month / day-of-week, ``L`` (last day of the month / week; ``5L``: the last
  Thursday), ``W`` (``3W``: the weekday nearest the 3rd, ``LW``: the last weekday) and
  ``#`` (``3#2``: the second Tuesday). Day-of-week counts 1-7 = SUN-SAT, not cron's 0-6.
  Years 1970-2199.
- ``rate(N unit)``: minute(s), hour(s), day(s); the unit is singular iff N is 1. A day is
  24 hours, whatever the time zone does (AWS: rate schedules ignore DST).
- ``at(yyyy-mm-ddThh:mm:ss)``: once, at that wall-clock time in the schedule's zone.

cron and at are read in ``ScheduleExpressionTimezone`` (UTC by default). Across DST, as
AWS documents: a time the spring-forward gap skips does not fire that day; a time the
fall-back repeats fires once (its first occurrence).

croniter would cover part of the cron syntax, but not ``W``, the year field, wrapping
ranges or EventBridge's day-of-week numbering, and every field would need translating;
matching the six fields directly is smaller and is checked against croniter in the tests
for the syntax both share.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
)}  # fmt: skip
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
MIN_YEAR, MAX_YEAR = 1970, 2199
MINUTE_MS = 60_000
_RATE = re.compile(r"rate\(([1-9][0-9]{0,8}) (minute|minutes|hour|hours|day|days)\)")
_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_UNIT_MS = {"minute": MINUTE_MS, "hour": 60 * MINUTE_MS, "day": 24 * 60 * MINUTE_MS}


class InvalidExpression(ValueError):
    """Not a schedule expression EventBridge Scheduler accepts."""


@dataclass(frozen=True)
class DaySpec:
    """Day-of-month or day-of-week: plain values, or one special item."""

    values: frozenset[int] = frozenset()
    last: bool = False  # DOM "L": the last day; DOW "nL": the last weekday n
    last_weekday: bool = False  # DOM "LW"
    nearest_weekday: int | None = None  # DOM "nW"
    nth: tuple[int, int] | None = None  # DOW "d#k": (weekday 1-7, k)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    dom: DaySpec | None  # None: "?"
    dow: DaySpec | None

    def days(self, year: int, month: int) -> list[int]:
        """The days of ``month`` this expression fires on, in order."""
        length = calendar.monthrange(year, month)[1]
        if self.dom is not None:
            return _dom_days(self.dom, year, month, length)
        assert self.dow is not None
        return _dow_days(self.dow, year, month, length)


@dataclass(frozen=True)
class Rate:
    every_ms: int


@dataclass(frozen=True)
class At:
    when: datetime  # naive: wall-clock time in the schedule's time zone


Expression = Cron | Rate | At


def parse(expression: str) -> Expression:
    """The parsed expression; ``InvalidExpression`` for anything AWS refuses."""
    if match := _RATE.fullmatch(expression):
        value, unit = int(match[1]), match[2]
        if (value == 1) != (not unit.endswith("s")):
            raise InvalidExpression(expression)  # rate(1 minutes), rate(5 minute)
        return Rate(value * _UNIT_MS[unit.rstrip("s")])
    if match := _AT.fullmatch(expression):
        try:
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            return At(datetime(year, month, day, hour, minute, second))
        except ValueError as exc:
            raise InvalidExpression(expression) from exc
    if expression.startswith("cron(") and expression.endswith(")"):
        return _cron(expression, expression[5:-1])
    raise InvalidExpression(expression)


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone ``name`` (UTC when None); ValueError when there is none."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(name) from exc


# --- cron fields -------------------------------------------------------------------


def _cron(expression: str, inner: str) -> Cron:
    fields = inner.split(" ")
    if len(fields) != 6 or any(not f for f in fields):
        raise InvalidExpression(expression)
    minute, hour, dom, month, dow, year = (f.upper() for f in fields)
    if (dom == "?") == (dow == "?"):  # exactly one of them must be "?"
        raise InvalidExpression(expression)
    try:
        return Cron(
            minutes=_values(minute, 0, 59, {}),
            hours=_values(hour, 0, 23, {}),
            months=_values(month, 1, 12, MONTHS),
            years=_values(year, MIN_YEAR, MAX_YEAR, {}),
            dom=None if dom == "?" else _dom(dom),
            dow=None if dow == "?" else _dow(dow),
        )
    except ValueError as exc:
        raise InvalidExpression(expression) from exc


def _number(text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names[text] if text in names else int(text) if text.isdigit() else None
    if value is None or not low <= value <= high:
        raise ValueError(text)
    return value


def _values(field: str, low: int, high: int, names: dict[str, int], step_ok: bool = True
            ) -> frozenset[int]:  # fmt: skip
    out: set[int] = set()
    for item in field.split(","):
        base, slash, step_text = item.partition("/")
        if slash and (not step_ok or not step_text.isdigit() or int(step_text) == 0):
            raise ValueError(item)
        step = int(step_text) if slash else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, low, high, names), _number(b, low, high, names)
        else:
            first = _number(base, low, high, names)
            last = high if slash else first  # "0/15": from 0, every 15, to the end
        span = last - first if last >= first else (high - first) + (last - low) + 1
        out.update(low + (first - low + k) % (high - low + 1) for k in range(0, span + 1, step))
    return frozenset(out)


def _dom(field: str) -> DaySpec:
    if field == "L":
        return DaySpec(last=True)
    if field == "LW":
        return DaySpec(last_weekday=True)
    if field.endswith("W"):
        return DaySpec(nearest_weekday=_number(field[:-1], 1, 31, {}))
    return DaySpec(values=_values(field, 1, 31, {}))


def _dow(field: str) -> DaySpec:
    if field == "L":  # the last day of the week: Saturday
        return DaySpec(values=frozenset({7}))
    if field.endswith("L"):
        return DaySpec(values=frozenset({_number(field[:-1], 1, 7, DAYS)}), last=True)
    if "#" in field:
        day, _, nth = field.partition("#")
        return DaySpec(nth=(_number(day, 1, 7, DAYS), _number(nth, 1, 5, {})))
    return DaySpec(values=_values(field, 1, 7, DAYS, step_ok=False))


def _weekday(year: int, month: int, day: int) -> int:
    """EventBridge's day of week: 1 = Sunday ... 7 = Saturday."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


def _dom_days(spec: DaySpec, year: int, month: int, length: int) -> list[int]:
    if spec.last:
        return [length]
    if spec.last_weekday:
        day = length
        while _weekday(year, month, day) in (1, 7):
            day -= 1
        return [day]
    if spec.nearest_weekday is not None:
        day = spec.nearest_weekday
        if day > length:
            return []
        kind = _weekday(year, month, day)
        if kind == 7:  # Saturday: the Friday before, or Monday when that leaves the month
            day = day - 1 if day > 1 else day + 2
        elif kind == 1:  # Sunday: the Monday after, or Friday when that leaves the month
            day = day + 1 if day < length else day - 2
        return [day]
    return [d for d in sorted(spec.values) if d <= length]


def _dow_days(spec: DaySpec, year: int, month: int, length: int) -> list[int]:
    if spec.nth is not None:
        weekday, nth = spec.nth
        matching = [d for d in range(1, length + 1) if _weekday(year, month, d) == weekday]
        return [matching[nth - 1]] if nth <= len(matching) else []
    days = [d for d in range(1, length + 1) if _weekday(year, month, d) in spec.values]
    return days[-1:] if spec.last else days


# --- when an expression fires ------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """One schedule's expression in its time zone, between its start and end dates.

    ``anchor_ms`` is when a rate schedule counts from: its StartDate, else the time it
    was created or last updated (AWS: "starts invoking immediately")."""

    expression: Expression
    tz: ZoneInfo
    anchor_ms: int
    start_ms: int | None = None
    end_ms: int | None = None

    def next_after(self, after_ms: int) -> int | None:
        """The first tick strictly after ``after_ms`` (epoch ms), or None: no more."""
        expr = self.expression
        if isinstance(expr, At):  # StartDate and EndDate do not apply to one-time schedules
            tick = _utc_ms(expr.when.replace(tzinfo=self.tz))
            return tick if tick > after_ms else None
        if self.start_ms is not None:
            after_ms = max(after_ms, self.start_ms - 1)
        if isinstance(expr, Rate):
            anchor = self.anchor_ms
            if after_ms < anchor:
                tick = anchor
            else:
                tick = anchor + ((after_ms - anchor) // expr.every_ms + 1) * expr.every_ms
        else:
            found = _cron_next(expr, after_ms, self.tz)
            if found is None:
                return None
            tick = found
        return tick if self.end_ms is None or tick <= self.end_ms else None

    def latest_due(self, after_ms: int, now_ms: int) -> int | None:
        """The last tick in (``after_ms``, ``now_ms``], or None: the one fire a schedule
        owes after being down however long (missed ticks never come as a burst)."""
        first = self.next_after(after_ms)
        if first is None or first > now_ms:
            return None
        if isinstance(self.expression, Rate):
            anchor, every = self.anchor_ms, self.expression.every_ms
            latest = anchor + (now_ms - anchor) // every * every
            if self.end_ms is not None:
                latest = min(latest, anchor + (self.end_ms - anchor) // every * every)
            return max(first, latest)
        # cron: look back over growing windows from now for a tick, then walk forward
        # (a window holds few ticks, however long nimbus was down).
        window = MINUTE_MS
        start = first
        while True:
            probe = max(after_ms, now_ms - window)
            tick = self.next_after(probe)
            if tick is not None and tick <= now_ms:
                start = tick
                break
            if probe == after_ms:
                break
            window *= 8
        latest = start
        while (tick := self.next_after(latest)) is not None and tick <= now_ms:
            latest = tick
        return latest


def _utc_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    """False for wall-clock times a spring-forward gap skips."""
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def _cron_next(cron: Cron, after_ms: int, tz: ZoneInfo) -> int | None:
    after = datetime.fromtimestamp(after_ms / 1000, UTC)
    # Candidates are wall-clock minutes from the one holding ``after``; each must also be
    # after it in real time (in a repeated fall-back hour the wall clock goes back, and
    # its minutes count at their first pass only).
    begin = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0, fold=0)
    for year in sorted(y for y in cron.years if y >= begin.year):
        for month in sorted(cron.months):
            if (year, month) < (begin.year, begin.month):
                continue
            for day in cron.days(year, month):
                if (year, month, day) < (begin.year, begin.month, begin.day):
                    continue
                for hour in sorted(cron.hours):
                    for minute in sorted(cron.minutes):
                        naive = datetime(year, month, day, hour, minute)
                        if naive < begin or not _exists(naive, tz):
                            continue
                        tick = _utc_ms(naive.replace(tzinfo=tz))  # fold=0: first pass
                        if tick > after_ms:
                            return tick
    return None
