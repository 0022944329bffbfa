"""The invocation log store: batches written in multi-row chunks read back intact."""

from __future__ import annotations

from pathlib import Path

from nimbus.observe.logs import InvocationLog, LogStore
from nimbus.store.database import Database


def record(n: int) -> InvocationLog:
    return InvocationLog(
        request_id=f"req-{n}",
        function_name="fn",
        version="$LATEST",
        log_stream="2024/01/01/[$LATEST]abc",
        timestamp_ms=1000 + n,
        text=f"START RequestId: req-{n}\nline {n}\n",
        duration_ms=1.25,
        billed_ms=2,
        memory_size=128,
        max_memory_used=20,
        init_ms=None if n % 2 else 3.5,
        error_type="Boom" if n % 7 == 0 else None,
    )


def test_a_batch_of_any_length_is_stored_in_order(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nimbus.db'}")
    db.migrate()
    logs = LogStore(db)
    written = [record(n) for n in range(203)]  # 128 + 64 + 8 + 2 + 1 rows per statement
    logs._write(written)
    assert logs.read("fn", limit=1000) == written
    db.dispose()
