"""PostgreSQL change streams end to end, as a user drives them: boto3's
``create_event_source_mapping(EventSourceArn="postgresql://...?tables=...")`` on a real
nimbus, rows written to a private PostgreSQL cluster (wal_level=logical), real functions
reporting what they got to a webhook sink."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from nimbus.events.sources.pgoutput import parse_lsn
from nimbus.events.sources.postgres_changes import slot_name
from tests.api.conftest import error
from tests.api.test_event_source_mappings import function, wait_state
from tests.conftest import live_server, make_zip
from tests.events.sources.postgres_cluster import Cluster, cluster
from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

# Each batch the function gets is posted to the sink, then MODE=fail fails it.
REPORTER = """
import json, os, urllib.request

def handler(event, context):
    records = [{"seq": r["dynamodb"]["SequenceNumber"], "name": r["eventName"],
                "id": r["dynamodb"]["Keys"]["id"]["N"], "dynamodb": r["dynamodb"],
                "source": r["eventSource"], "table": r["postgres"]["table"]}
               for r in event["Records"]]
    mode = os.environ.get("MODE", "")
    body = json.dumps({"tag": os.environ["TAG"], "mode": mode, "records": records})
    req = urllib.request.Request(os.environ["SINK"], data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    if mode == "fail":
        raise RuntimeError("failing on purpose")
"""


@pytest.fixture(scope="session")
def pg() -> Cluster:
    return cluster("logical")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("pgstream") / "data") as proc:
        yield proc


@pytest.fixture
def lam(server: NimbusProcess) -> Any:
    return server.client()


@pytest.fixture
def table(pg: Cluster) -> Iterator[str]:
    name = f"orders_{uuid.uuid4().hex[:8]}"
    sql(
        pg,
        f"CREATE TABLE {name} (id int PRIMARY KEY, status text)",
        f"ALTER TABLE {name} REPLICA IDENTITY FULL",
    )
    yield name
    sql(pg, f"DROP TABLE {name}")


def sql(pg: Cluster, *statements: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
    return rows


def uri(pg: Cluster, table: str, view: str) -> str:
    return f"{pg.url()}?tables={table}&streamViewType={view}"


def confirmed(pg: Cluster, mapping_uuid: str) -> int | None:
    rows = sql(
        pg,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
        f"WHERE slot_name = '{slot_name(mapping_uuid)}'",
    )
    return parse_lsn(rows[0][0]) if rows else None


def end_of(records: list[dict]) -> int:
    """The end LSN of the last record's transaction: where the slot moves once it is done."""
    return max(int(r["seq"][:20]) for r in records)


def wait_for(condition: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.1)


def reporter(lam: Any, sink: Sink, tag: str, **env: str) -> str:
    return function(lam, make_zip({"app.py": REPORTER}), SINK=sink.url, TAG=tag, **env)


def records_of(sink: Sink, tag: str, mode: str | None = None) -> list[dict]:
    return [
        r
        for post in list(sink.received)
        if post["tag"] == tag and (mode is None or post["mode"] == mode)
        for r in post["records"]
    ]


def map_stream(lam: Any, fn: str, address: str, **options: Any) -> str:
    created = lam.create_event_source_mapping(
        FunctionName=fn,
        EventSourceArn=address,
        StartingPosition="LATEST",
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        **options,
    )
    wait_state(lam, created["UUID"], "Enabled")
    return str(created["UUID"])


def delete_mapping(lam: Any, pg: Cluster, mapping_uuid: str) -> None:
    """Delete the mapping and see its slot dropped with it."""
    lam.delete_event_source_mapping(UUID=mapping_uuid)

    def gone() -> bool:
        try:
            lam.get_event_source_mapping(UUID=mapping_uuid)
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False

    wait_for(gone, what="mapping deleted")
    assert confirmed(pg, mapping_uuid) is None  # no slot left holding WAL back


@pytest.mark.sandbox
def test_changes_reach_functions_in_commit_order_once(
    lam: Any, pg: Cluster, table: str, sink: Sink
) -> None:
    full = map_stream(lam, reporter(lam, sink, "full"), uri(pg, table, "NEW_AND_OLD_IMAGES"))
    keys = map_stream(lam, reporter(lam, sink, "keys"), uri(pg, table, "KEYS_ONLY"))
    pattern = '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["open"]}}}}'
    filtered = map_stream(
        lam,
        reporter(lam, sink, "filtered"),
        uri(pg, table, "NEW_IMAGE"),
        FilterCriteria={"Filters": [{"Pattern": pattern}]},
    )
    first, second = psycopg.connect(pg.url()), psycopg.connect(pg.url())
    try:  # the transaction that starts first commits last
        first.execute(f"INSERT INTO {table} VALUES (1, 'open')")
        second.execute(f"INSERT INTO {table} VALUES (2, 'open'), (3, 'closed')")
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    sql(
        pg,
        *[f"INSERT INTO {table} VALUES ({i}, 'open')" for i in range(4, 31)],
        f"UPDATE {table} SET status = 'shipped' WHERE id <= 5",
        f"DELETE FROM {table} WHERE id > 25",
    )
    expected = (
        [("INSERT", i) for i in (2, 3, 1)]
        + [("INSERT", i) for i in range(4, 31)]
        + [("MODIFY", i) for i in range(1, 6)]
        + [("REMOVE", i) for i in range(26, 31)]
    )
    sink.wait_until(
        lambda posts: all(len(records_of(sink, tag)) >= len(expected) for tag in ("full", "keys")),
        timeout=90,
    )
    end = end_of(records_of(sink, "full"))  # the last DELETE's transaction
    for tag, mapping_uuid in (("full", full), ("keys", keys), ("filtered", filtered)):
        # The filtered mapping too: the slot moves past what its filter dropped.
        wait_for(
            lambda m=mapping_uuid: (confirmed(pg, m) or 0) >= end,
            90,
            f"{tag}: slot moved past every change",
        )
    for tag in ("full", "keys"):
        got = records_of(sink, tag)
        assert [(r["name"], int(r["id"])) for r in got] == expected  # commit order, once
        assert [r["seq"] for r in got] == sorted(r["seq"] for r in got)
        assert {r["source"] for r in got} == {"nimbus:postgres"}
        assert {r["table"] for r in got} == {table}
    full_records = records_of(sink, "full")
    shipped = next(r["dynamodb"] for r in full_records if r["name"] == "MODIFY")
    assert shipped["NewImage"]["status"] == {"S": "shipped"}
    assert shipped["OldImage"] == {"id": {"N": "1"}, "status": {"S": "open"}}
    assert shipped["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    for r in records_of(sink, "keys"):
        assert "NewImage" not in r["dynamodb"] and "OldImage" not in r["dynamodb"]
        assert r["dynamodb"]["Keys"] == {"id": {"N": r["id"]}}
    # Only INSERTs of open rows pass the filter: every id but 3.
    assert [int(r["id"]) for r in records_of(sink, "filtered")] == [2, 1, *range(4, 31)]
    for mapping_uuid in (full, keys, filtered):
        delete_mapping(lam, pg, mapping_uuid)


@pytest.mark.sandbox
def test_a_failing_batch_is_retried_and_the_slot_waits(
    lam: Any, pg: Cluster, table: str, sink: Sink
) -> None:
    fn = reporter(lam, sink, "retry", MODE="fail")
    mapping_uuid = map_stream(lam, fn, uri(pg, table, "NEW_IMAGE"))
    sql(pg, f"INSERT INTO {table} SELECT g, 'open' FROM generate_series(1, 3) g")
    sink.wait_until(lambda posts: len(posts) >= 1, timeout=60)
    first = confirmed(pg, mapping_uuid)
    sink.wait_until(lambda posts: len(posts) >= 3, timeout=60)
    assert [[r["id"] for r in p["records"]] for p in sink.received[:3]] == [["1", "2", "3"]] * 3
    # Three failed attempts: the slot waited before the batch's transaction.
    assert confirmed(pg, mapping_uuid) == first
    assert first is not None and first < end_of(records_of(sink, "retry"))
    lam.update_function_configuration(
        FunctionName=fn, Environment={"Variables": {"SINK": sink.url, "TAG": "retry", "MODE": "ok"}}
    )
    sink.wait_until(lambda posts: any(p["mode"] == "ok" for p in posts), timeout=90)
    ok = records_of(sink, "retry", "ok")
    assert [r["id"] for r in ok] == ["1", "2", "3"]
    wait_for(lambda: (confirmed(pg, mapping_uuid) or 0) >= end_of(ok), 60, "slot moved on")
    got = lam.get_event_source_mapping(UUID=mapping_uuid)
    assert got["StartingPosition"] == "LATEST" and got["MaximumRetryAttempts"] == -1
    delete_mapping(lam, pg, mapping_uuid)


def test_mappings_the_server_cannot_serve_are_refused(lam: Any, pg: Cluster, table: str) -> None:
    fn = function(lam)
    replica = cluster("replica")
    with pytest.raises(ClientError) as caught:
        lam.create_event_source_mapping(
            FunctionName=fn,
            EventSourceArn=f"{replica.url()}?tables=orders",
            StartingPosition="LATEST",
        )
    code, status, message = error(caught)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "wal_level = replica" in message and "set wal_level = logical" in message
    refusals = [
        (
            {
                "EventSourceArn": uri(pg, table, "NEW_IMAGE"),
                "StartingPosition": "AT_TIMESTAMP",
                "StartingPositionTimestamp": 1,
            },
            "StartingPosition AT_TIMESTAMP is not valid",
        ),
        ({"EventSourceArn": uri(pg, table, "NEW_IMAGE")}, "startingPosition"),
        (
            {
                "EventSourceArn": f"{pg.url()}?streamViewType=NEW_IMAGE",
                "StartingPosition": "LATEST",
            },
            "name the tables",
        ),
        (
            {"EventSourceArn": uri(pg, "missing_table", "NEW_IMAGE"), "StartingPosition": "LATEST"},
            "does not exist",
        ),
    ]
    for arguments, says in refusals:
        with pytest.raises(ClientError) as caught:
            lam.create_event_source_mapping(FunctionName=fn, **arguments)
        code, status, message = error(caught)
        assert (code, status) == ("InvalidParameterValueException", 400), message
        assert says in message
    assert lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"] == []


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NimbusProcess]:
    with live_server(tmp_path / "data") as proc:
        yield proc


@pytest.mark.sandbox
def test_kill_9_resumes_from_the_slot(
    own_server: NimbusProcess, pg: Cluster, table: str, sink: Sink
) -> None:
    lam = own_server.client()
    mapping_uuid = map_stream(lam, reporter(lam, sink, "kill"), uri(pg, table, "NEW_IMAGE"))
    sql(pg, *[f"INSERT INTO {table} VALUES ({i}, 'open')" for i in range(200)])
    sink.wait_until(lambda posts: sum(len(p["records"]) for p in posts) >= 50, timeout=90)
    own_server.stop(signal.SIGKILL)
    before = len(records_of(sink, "kill"))
    own_server.start()
    sink.wait_until(
        lambda posts: {int(r["id"]) for r in records_of(sink, "kill")} >= set(range(200)),
        timeout=120,
    )
    end = end_of(records_of(sink, "kill"))
    wait_for(lambda: (confirmed(pg, mapping_uuid) or 0) >= end, 60, "slot moved on")
    ids = [int(r["id"]) for r in records_of(sink, "kill")]
    assert set(ids) == set(range(200))
    assert list(dict.fromkeys(ids)) == list(range(200))  # first deliveries in commit order
    duplicates = sum(n - 1 for n in Counter(ids).values())
    # At most the batches in flight at the kill come again: the rest resumed from the slot.
    assert duplicates <= 20 and before < 200, (duplicates, before)
    delete_mapping(lam, pg, mapping_uuid)
