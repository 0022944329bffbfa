"""PostgresChangeSource against a private PostgreSQL cluster (wal_level=logical, started
for the session, see postgres_cluster.py): commit order, the slot as checkpoint, restart
and kill -9 of its reader, the server checks, and the poller's retries on top of it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources.pgoutput import parse_lsn
from nimbus.events.sources.poller import Poller
from nimbus.events.sources.postgres_changes import PostgresChangeSource, slot_name
from nimbus.events.sources.source import SourceRecord
from nimbus.invocation.invoker import InvokeResult
from nimbus.store.event_source_mappings import EventSourceMapping, MappingSettings
from tests.events.sources.conftest import killed_owner, options
from tests.events.sources.postgres_cluster import Cluster, cluster


@pytest.fixture(scope="session")
def pg() -> Cluster:
    return cluster("logical")


@pytest.fixture
def table(pg: Cluster) -> Iterator[str]:
    """A fresh table ``(id int primary key, status text, note text)``, dropped after."""
    name = f"orders_{uuid.uuid4().hex[:8]}"
    sql(pg, f"CREATE TABLE {name} (id int PRIMARY KEY, status text, note text)")
    yield name
    sql(pg, f"DROP TABLE {name}")


def sql(pg: Cluster, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements, each in its own transaction; the last one's rows."""
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
    return rows


def uri(pg: Cluster, table: str, view: str = "NEW_AND_OLD_IMAGES") -> str:
    return f"{pg.url()}?tables={table}&streamViewType={view}"


@pytest.fixture
async def opened() -> AsyncIterator[list[PostgresChangeSource]]:
    """Sources a test opens; closed and their slots dropped afterwards."""
    sources: list[PostgresChangeSource] = []
    yield sources
    for source in sources:
        await source.close()
        await PostgresChangeSource.retire(
            source.options.mapping_uuid, source.options.event_source_arn
        )


async def source_on(
    opened: list, address: str, batch: int = 10, mapping_uuid: str | None = None
) -> PostgresChangeSource:
    opts = options(address, batch, starting_position="LATEST")
    if mapping_uuid is not None:
        opts = type(opts)(**{**vars(opts), "mapping_uuid": mapping_uuid})
    source = PostgresChangeSource(opts)
    await source.open()
    opened.append(source)
    return source


async def drain(source: PostgresChangeSource, ack: bool = True) -> list[SourceRecord]:
    got: list[SourceRecord] = []
    while records := await source.receive(100, 0.3):
        got += records
        if ack:
            await source.ack(records)
    return got


def confirmed(pg: Cluster, mapping_uuid: str) -> int:
    rows = sql(
        pg,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
        f"WHERE slot_name = '{slot_name(mapping_uuid)}'",
    )
    return parse_lsn(rows[0][0])


def summary(records: list[SourceRecord]) -> list[tuple[str, str]]:
    return [(r.record["eventName"], r.record["dynamodb"]["Keys"]["id"]["N"]) for r in records]


async def test_changes_come_in_commit_order_with_images(
    pg: Cluster, table: str, opened: list
) -> None:
    sql(pg, f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    source = await source_on(opened, uri(pg, table))
    # Two transactions: the first to start commits last.
    first = psycopg.connect(pg.url())
    second = psycopg.connect(pg.url())
    try:
        first.execute(f"INSERT INTO {table} VALUES (1, 'started first', NULL)")
        second.execute(f"INSERT INTO {table} VALUES (2, 'started second', NULL)")
        second.execute(f"INSERT INTO {table} VALUES (3, 'started second', NULL)")
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    sql(
        pg,
        f"UPDATE {table} SET status = 'shipped' WHERE id = 2",
        f"DELETE FROM {table} WHERE id = 1",
    )
    records = await drain(source)
    assert summary(records) == [
        ("INSERT", "2"),
        ("INSERT", "3"),
        ("INSERT", "1"),
        ("MODIFY", "2"),
        ("REMOVE", "1"),
    ]
    sequence = [r.item_id for r in records]
    assert sequence == sorted(sequence) and len(set(sequence)) == 5
    assert [r.record["dynamodb"]["SequenceNumber"] for r in records] == sequence
    modify = records[3].record["dynamodb"]
    assert modify["NewImage"]["status"] == {"S": "shipped"}
    assert modify["OldImage"]["status"] == {"S": "started second"}
    assert modify["OldImage"]["note"] == {"NULL": True}
    remove = records[4].record["dynamodb"]
    assert remove["OldImage"]["status"] == {"S": "started first"} and "NewImage" not in remove
    assert records[0].record["postgres"]["table"] == table
    # Records 2 and 3 are one transaction: same end LSN, consecutive ordinals.
    assert sequence[0][:20] == sequence[1][:20] != sequence[2][:20]
    # The URI without user and password.
    assert records[0].record["eventSourceARN"] == uri(pg, table).replace("postgres@", "")


async def test_keys_only_and_new_and_old_images_side_by_side(
    pg: Cluster, table: str, opened: list
) -> None:
    sql(pg, f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    keys = await source_on(opened, uri(pg, table, "KEYS_ONLY"))
    both = await source_on(opened, uri(pg, table, "NEW_AND_OLD_IMAGES"))
    sql(
        pg,
        f"INSERT INTO {table} VALUES (7, 'open', 'n')",
        f"UPDATE {table} SET status = 'done' WHERE id = 7",
        f"DELETE FROM {table}",
    )
    plain, full = await drain(keys), await drain(both)
    assert summary(plain) == summary(full) == [("INSERT", "7"), ("MODIFY", "7"), ("REMOVE", "7")]
    for record in plain:
        assert set(record.record["dynamodb"]) == {
            "ApproximateCreationDateTime",
            "Keys",
            "SequenceNumber",
            "SizeBytes",
            "StreamViewType",
        }
        assert record.record["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    assert [sorted(k for k in r.record["dynamodb"] if k.endswith("Image")) for r in full] == [
        ["NewImage"],
        ["NewImage", "OldImage"],
        ["OldImage"],
    ]
    assert full[1].record["dynamodb"]["NewImage"] == {
        "id": {"N": "7"},
        "status": {"S": "done"},
        "note": {"S": "n"},
    }


async def test_the_slot_moves_only_past_settled_transactions(
    pg: Cluster, table: str, opened: list
) -> None:
    source = await source_on(opened, uri(pg, table, "NEW_IMAGE"))
    mapping_uuid = source.options.mapping_uuid
    start = confirmed(pg, mapping_uuid)
    sql(
        pg,
        f"INSERT INTO {table} SELECT g, 'bulk', NULL FROM generate_series(1, 3) g",
        f"INSERT INTO {table} VALUES (4, 'alone', NULL)",
    )
    records = await drain(source, ack=False)
    assert summary(records) == [("INSERT", str(i)) for i in (1, 2, 3, 4)]
    await source.ack(records[:2])  # part of the first transaction: the slot stays
    assert confirmed(pg, mapping_uuid) == start
    await source.ack(records[3:])  # the second, but the first is not done yet
    assert confirmed(pg, mapping_uuid) == start
    await source.ack(records[2:3])  # both done now
    assert confirmed(pg, mapping_uuid) == int(records[3].item_id[:20])

    # Unsettled records come again to the mapping's next reader; settled ones never.
    sql(pg, f"INSERT INTO {table} VALUES (5, 'later', NULL)")
    taken = await drain(source, ack=False)
    assert summary(taken) == [("INSERT", "5")]
    await source.close()
    again = await source_on(opened, uri(pg, table, "NEW_IMAGE"), mapping_uuid=mapping_uuid)
    redelivered = await drain(again)
    assert [r.item_id for r in redelivered] == [r.item_id for r in taken]
    assert confirmed(pg, mapping_uuid) >= int(taken[0].item_id[:20])
    assert await drain(again) == []


async def test_reads_ahead_of_unsettled_records_without_repeating(
    pg: Cluster, table: str, opened: list
) -> None:
    source = await source_on(opened, uri(pg, table, "KEYS_ONLY"), batch=100)
    # One big transaction (more rows than one read asks for) and many small ones.
    sql(pg, f"INSERT INTO {table} SELECT g, 's', NULL FROM generate_series(1, 2500) g")
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        for i in range(2501, 3001):
            conn.execute(f"INSERT INTO {table} VALUES ({i}, 's', NULL)")
    held: list[SourceRecord] = []
    while len(held) < 3000:  # everything, handed out while none is settled
        batch = await source.receive(100, 1.0)
        assert batch, f"only {len(held)} records came"
        held += batch
    assert [int(k) for _, k in summary(held)] == list(range(1, 3001))
    assert await source.receive(100, 0.2) == []
    await source.ack(held)
    assert confirmed(pg, source.options.mapping_uuid) == int(held[-1].item_id[:20])


async def test_an_idle_slot_moves_past_other_tables_changes(
    pg: Cluster, table: str, opened: list
) -> None:
    source = await source_on(opened, uri(pg, table, "NEW_IMAGE"))
    mapping_uuid = source.options.mapping_uuid
    start = confirmed(pg, mapping_uuid)
    other = f"other_{uuid.uuid4().hex[:8]}"
    sql(pg, f"CREATE TABLE {other} (id int PRIMARY KEY)")
    try:
        sql(pg, f"INSERT INTO {other} SELECT generate_series(1, 1000)")
        written = parse_lsn(sql(pg, "SELECT pg_current_wal_flush_lsn()::text")[0][0])
        assert await source.receive(10, 0.2) == []
        # Nothing of its tables was there: the slot holds none of that WAL back.
        assert confirmed(pg, mapping_uuid) >= written > start
        # While a record is unsettled, it stays before it.
        sql(pg, f"INSERT INTO {table} VALUES (1, 'x', NULL)")
        (held,) = await source.receive(10, 2.0)
        sql(pg, f"INSERT INTO {other} SELECT generate_series(1001, 2000)")
        assert await source.receive(10, 0.2) == []
        assert confirmed(pg, mapping_uuid) < int(held.item_id[:20])
        await source.ack([held])
        assert confirmed(pg, mapping_uuid) == int(held.item_id[:20])
    finally:
        sql(pg, f"DROP TABLE {other}")


async def test_records_of_a_killed_reader_come_back(pg: Cluster, table: str, opened: list) -> None:
    first = await source_on(opened, uri(pg, table, "NEW_IMAGE"))
    mapping_uuid = first.options.mapping_uuid
    await first.close()  # the slot and publication exist; the killed owner reads them
    sql(pg, *[f"INSERT INTO {table} VALUES ({i}, 'x', NULL)" for i in range(20)])
    held = killed_owner(PostgresChangeSource, first.options, 10)
    assert len(held) == 10
    again = await source_on(opened, uri(pg, table, "NEW_IMAGE"), mapping_uuid=mapping_uuid)
    records = await drain(again)
    assert [r.item_id for r in records][:10] == held
    assert [k for _, k in summary(records)] == [str(i) for i in range(20)]


async def test_unchanged_large_values_without_full_identity(
    pg: Cluster, table: str, opened: list
) -> None:
    source = await source_on(opened, uri(pg, table, "NEW_IMAGE"))
    # 128,000 characters of hex: stored out of line (TOASTed), even compressed.
    sql(
        pg,
        f"INSERT INTO {table} VALUES (1, 'a', (SELECT string_agg(md5(g::text), '') "
        "FROM generate_series(1, 4000) g))",
        f"UPDATE {table} SET status = 'b' WHERE id = 1",
    )
    insert, update = await drain(source)
    assert len(insert.record["dynamodb"]["NewImage"]["note"]["S"]) == 128_000
    # PostgreSQL did not log the unchanged note again: it is not in the NewImage.
    assert update.record["dynamodb"]["NewImage"] == {"id": {"N": "1"}, "status": {"S": "b"}}


async def test_server_checks_say_what_to_fix(pg: Cluster, table: str) -> None:
    with pytest.raises(
        InvalidParameterValue, match=f"ALTER TABLE public.{table} REPLICA IDENTITY FULL"
    ):
        await PostgresChangeSource.check(uri(pg, table, "OLD_IMAGE"))
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        await PostgresChangeSource.check(uri(pg, "no_such_table"))
    keyless = f"log_{uuid.uuid4().hex[:8]}"
    sql(pg, f"CREATE TABLE {keyless} (line text)")
    try:
        with pytest.raises(InvalidParameterValue, match="add a primary key"):
            await PostgresChangeSource.check(uri(pg, keyless, "NEW_IMAGE"))
    finally:
        sql(pg, f"DROP TABLE {keyless}")
    role = f"plain_{uuid.uuid4().hex[:8]}"
    sql(pg, f"CREATE ROLE {role} LOGIN", f"GRANT SELECT ON {table} TO {role}")
    as_role = f"{pg.url(user=role)}?tables={table}&streamViewType=NEW_IMAGE"
    try:
        with pytest.raises(InvalidParameterValue, match=f"ALTER ROLE {role} REPLICATION"):
            await PostgresChangeSource.check(as_role)
        sql(pg, f"ALTER ROLE {role} REPLICATION")
        with pytest.raises(InvalidParameterValue, match=f"does not own public.{table}"):
            await PostgresChangeSource.check(as_role)
        sql(pg, f"ALTER TABLE {table} OWNER TO {role}")
        with pytest.raises(InvalidParameterValue, match="GRANT CREATE ON DATABASE postgres"):
            await PostgresChangeSource.check(as_role)
        sql(pg, f"GRANT CREATE ON DATABASE postgres TO {role}")
        await PostgresChangeSource.check(as_role)  # all it needs
        source = PostgresChangeSource(options(as_role, starting_position="LATEST"))
        await source.open()
        try:
            sql(pg, f"INSERT INTO {table} VALUES (1, 'by its owner', NULL)")
            assert summary(await drain(source)) == [("INSERT", "1")]
        finally:
            await source.close()
            await PostgresChangeSource.retire(source.options.mapping_uuid, as_role)
    finally:
        sql(
            pg,
            f"ALTER TABLE {table} OWNER TO postgres",
            f"REVOKE ALL ON {table} FROM {role}",
            f"REVOKE ALL ON DATABASE postgres FROM {role}",
            f"DROP ROLE {role}",
        )
    # Unreachable is not refused (the poller retries), but opening says so.
    down = f"postgresql://postgres@127.0.0.1:1/postgres?tables={table}"
    await PostgresChangeSource.check(down)
    with pytest.raises(SourceUnavailable, match="unreachable"):
        await PostgresChangeSource(options(down, starting_position="LATEST")).open()


async def test_wal_level_replica_is_refused() -> None:
    replica = cluster("replica")
    with pytest.raises(InvalidParameterValue, match="set wal_level = logical") as caught:
        await PostgresChangeSource.check(f"{replica.url()}?tables=anything")
    assert "wal_level = replica" in caught.value.message and "restart" in caught.value.message


async def test_retire_drops_slot_and_publication(pg: Cluster, table: str) -> None:
    source = PostgresChangeSource(
        options(uri(pg, table, "NEW_IMAGE"), starting_position="TRIM_HORIZON")
    )
    await source.open()
    await source.close()
    name = slot_name(source.options.mapping_uuid)
    assert sql(
        pg,
        f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'",
    ) == [(1,)]
    await PostgresChangeSource.retire(source.options.mapping_uuid, source.options.event_source_arn)
    assert sql(
        pg,
        f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'",
    ) == [(0,)]
    assert sql(pg, f"SELECT count(*) FROM pg_publication WHERE pubname = '{name}'") == [(0,)]
    # Twice is fine, and so is a database that is gone.
    await PostgresChangeSource.retire(source.options.mapping_uuid, source.options.event_source_arn)
    await PostgresChangeSource.retire(
        source.options.mapping_uuid, f"{pg.url('gone')}?tables={table}"
    )


# -- the poller over a real slot ---------------------------------------------------------


class Function:
    """Answers each invocation with ``answer(records)``: None, a dict, or "error"."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []  # keys of each batch
        self.end = 0  # the end LSN of the last record's transaction

    async def __call__(self, payload: bytes) -> InvokeResult:
        records = json.loads(payload)["Records"]
        self.calls.append([r["dynamodb"]["Keys"]["id"]["N"] for r in records])
        self.end = int(records[-1]["dynamodb"]["SequenceNumber"][:20])
        outcome = self.answer(records, len(self.calls))
        if outcome == "error":
            return InvokeResult(b'{"errorMessage": "boom"}', "Unhandled", "$LATEST", "", "r")
        return InvokeResult(json.dumps(outcome).encode(), None, "$LATEST", "", "r")


def mapping(address: str, **settings: Any) -> EventSourceMapping:
    values: dict[str, Any] = {
        "batch_size": 10,
        "maximum_batching_window": 0,
        "maximum_retry_attempts": -1,
        "maximum_record_age": -1,
        "bisect_batch_on_function_error": False,
        "starting_position": "LATEST",
    }
    values.update(settings)
    return EventSourceMapping(
        uuid=str(uuid.uuid4()),
        function_name="f",
        qualifier=None,
        event_source_arn=address,
        kind="postgresql",
        enabled=True,
        state="Creating",
        state_reason="User action",
        settings=MappingSettings(**values),
    )


@asynccontextmanager
async def running(poller: Poller) -> AsyncIterator[None]:
    """The poller running (its source open) for the block, stopped after."""
    task = asyncio.get_running_loop().create_task(poller.run())
    try:
        async with asyncio.timeout(30):
            await poller.opened.wait()
        yield
    finally:
        poller.stop()
        await task


async def until(done: Any) -> None:
    async with asyncio.timeout(60):
        while not done():
            await asyncio.sleep(0.02)


def poller_on(
    pg: Cluster, table: str, fn: Function, opened: list, deliver: Any = None, **settings: Any
) -> tuple[Poller, PostgresChangeSource]:
    m = mapping(uri(pg, table, "NEW_IMAGE"), **settings)
    opts = options(m.event_source_arn, 10, starting_position="LATEST")
    source = PostgresChangeSource(type(opts)(**{**vars(opts), "mapping_uuid": m.uuid}))
    opened.append(source)
    poller = Poller(
        m,
        source,
        fn,
        "arn:aws:lambda:us-east-1:000000000000:function:f",
        deliver=deliver,
        retry_base_s=0.01,
    )
    return poller, source


async def test_a_failing_batch_is_retried_without_moving_the_slot(
    pg: Cluster, table: str, opened: list
) -> None:
    slot_while_failing: list[int] = []

    def answer(records: list, n: int) -> Any:
        if n <= 3:
            slot_while_failing.append(confirmed(pg, poller.mapping.uuid))
            return "error"
        return None

    fn = Function(answer)
    poller, _ = poller_on(pg, table, fn, opened)
    async with running(poller):
        sql(pg, f"INSERT INTO {table} SELECT g, 'x', NULL FROM generate_series(0, 2) g")
        await until(lambda: len(fn.calls) >= 4 and confirmed(pg, poller.mapping.uuid) >= fn.end)
    assert fn.calls == [["0", "1", "2"]] * 4  # the same batch, in order, until it passed
    # The slot did not move while it failed, and was before the batch's transaction.
    assert len(set(slot_while_failing)) == 1 and slot_while_failing[0] < fn.end
    assert poller.stats.counters["succeeded"] == 3


async def test_batch_item_failures_checkpoint_at_the_first_failed(
    pg: Cluster, table: str, opened: list
) -> None:
    def answer(records: list, n: int) -> Any:
        if n == 1:  # the third and fifth fail: retried from the third on
            return {
                "batchItemFailures": [
                    {"itemIdentifier": records[i]["dynamodb"]["SequenceNumber"]} for i in (4, 2)
                ]
            }
        return None

    fn = Function(answer)
    poller, _ = poller_on(
        pg, table, fn, opened, function_response_types=["ReportBatchItemFailures"]
    )
    async with running(poller):
        sql(pg, f"INSERT INTO {table} SELECT g, 'x', NULL FROM generate_series(0, 5) g")
        await until(lambda: len(fn.calls) >= 2 and confirmed(pg, poller.mapping.uuid) >= fn.end)
    assert fn.calls == [["0", "1", "2", "3", "4", "5"], ["2", "3", "4", "5"]]


async def test_filters_drop_records_and_the_slot_moves_past_them(
    pg: Cluster, table: str, opened: list
) -> None:
    fn = Function(lambda records, n: None)
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["open"]}}}}
    poller, _ = poller_on(pg, table, fn, opened, filters=[json.dumps(pattern)], filters_given=True)
    async with running(poller):
        sql(
            pg,
            f"INSERT INTO {table} VALUES (1, 'open', NULL)",
            f"INSERT INTO {table} VALUES (2, 'closed', NULL)",
            f"UPDATE {table} SET status = 'open' WHERE id = 2",
            f"INSERT INTO {table} VALUES (3, 'open', NULL)",
            f"DELETE FROM {table} WHERE id = 1",
            f"INSERT INTO {table} VALUES (4, 'open', NULL)",
        )
        await until(
            lambda: (
                "4" in [k for call in fn.calls for k in call]
                and confirmed(pg, poller.mapping.uuid) >= fn.end
            )
        )
    assert [k for call in fn.calls for k in call] == ["1", "3", "4"]
    assert poller.stats.counters["filtered"] == 3


async def test_retries_exhausted_go_to_on_failure_and_the_slot_moves_on(
    pg: Cluster, table: str, opened: list
) -> None:
    delivered: list[tuple[str, dict]] = []

    async def deliver(target: str, record: dict) -> bool:
        delivered.append((target, record))
        return True

    def answer(records: list, n: int) -> Any:
        poisoned = any(r["dynamodb"]["NewImage"]["status"]["S"] == "poison" for r in records)
        return "error" if poisoned else None

    fn = Function(answer)
    poller, _ = poller_on(
        pg,
        table,
        fn,
        opened,
        deliver,
        maximum_retry_attempts=2,
        bisect_batch_on_function_error=True,
        on_failure="arn:aws:sqs:us-east-1:000000000000:dlq",
    )
    async with running(poller):
        sql(pg, f"INSERT INTO {table} VALUES (1, 'ok', NULL), (2, 'poison', NULL), (3, 'ok', NULL)")
        await until(lambda: ["3"] in fn.calls and confirmed(pg, poller.mapping.uuid) >= fn.end)
    ((target, record),) = delivered
    assert target.endswith(":dlq")
    info = record["StreamBatchInfo"]
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert fn.calls == [["1", "2", "3"], ["1"], ["2", "3"], ["2"], ["3"]]  # bisected
