"""Wall-clock time in milliseconds since the epoch, the unit of Lambda's records.

One definition for every module that stamps or compares times. A component whose
behaviour depends on elapsed wall time (the dispatcher's MaximumEventAgeInSeconds)
takes a ``Clock``, so a test moves time instead of waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]  # returns epoch milliseconds, like ``now_ms``


def now_ms() -> int:
    return int(time.time() * 1000)
