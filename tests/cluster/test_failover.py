"""Two nimbus servers of one installation: when the server running an event source
mapping's poller, or the one firing schedules, is killed (kill -9: no release of its
leases), the other takes the work over once the lease runs out (no restart of the dead
one), and nothing accepted is lost on the way.

Which server owns what is read where nimbus keeps it: ``GET /_nimbus/event-source-mappings``
for a mapping's poller, the installation's ``leases`` table for the scheduler (whose
owner no API shows). An owner is ``host:pid:nonce``; the pid names the server."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from nimbus.events.sources.scheduler import LEASE_KEY as SCHEDULER_LEASE
from nimbus.events.sources.scheduler import LEASE_TTL_MS as SCHEDULER_TTL_MS
from nimbus.events.sources.supervisor import LEASE_TTL_MS as MAPPING_TTL_MS
from tests.cluster.servers import front_end, serving, shared_installation
from tests.conftest import POSTGRES_URL, ROLE, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]

# Generous room beyond a lease's TTL for the rest of a takeover on a loaded machine: the
# survivor's next look at the lease, a cold start of the function, the backlog.
SLACK_S = 90

# Posts what each batch held (message body, receive count) to the sink, then lingers
# before returning: messages stay in flight after their record, as a slow handler keeps
# them, so the kill catches some that ran and were not yet deleted.
REPORTER = make_zip({"app.py": """
import json, os, time, urllib.request

def handler(event, context):
    seen = [{"id": int(r["body"]), "count": int(r["attributes"]["ApproximateReceiveCount"])}
            for r in event["Records"]]
    req = urllib.request.Request(os.environ["SINK"], data=json.dumps(seen).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    time.sleep(1)
"""})  # fmt: skip
RECORDING = make_zip({"app.py": "def handler(e, c):\n    return e\n"})


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[dict[str, str]]:
    with shared_installation(tmp_path) as env:
        yield env


@pytest.fixture
def two(tmp_path: Path, installation: dict[str, str]) -> Iterator[list[NimbusProcess]]:
    # Each server's PostgreSQL sessions carry its name, so a test can tell when a killed
    # server's last transaction has ended (PostgreSQL finishes the statement it was running).
    url, tag = installation["NIMBUS_DATABASE_URL"], uuid.uuid4().hex[:8]
    servers = [
        front_end(tmp_path, name, {**installation, "NIMBUS_DATABASE_URL":
                                   f"{url}&application_name=nimbus-{tag}-{name}"})
        for name in ("a", "b")
    ]  # fmt: skip
    with serving(servers):
        yield servers


def wait_sessions_ended(server: NimbusProcess) -> None:
    """Wait until PostgreSQL has ended every session of a killed server: whatever it
    was committing is then committed or rolled back, and nothing of it changes later."""
    name = make_url(server.env["NIMBUS_DATABASE_URL"]).query["application_name"]
    admin = sa.create_engine(POSTGRES_URL)
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n")

    def ended() -> bool:
        with admin.connect() as conn:  # a new transaction: pg_stat_activity is a snapshot
            return conn.execute(query, {"n": name}).scalar_one() == 0

    try:
        wait_for(f"the sessions of {name} to end", ended, 30)
    finally:
        admin.dispose()


def held_by(owner: str | None, servers: list[NimbusProcess]) -> NimbusProcess | None:
    """The server whose process holds a lease (``host:pid:nonce``), if one of them does."""
    if owner is None:
        return None
    pid = int(owner.split(":")[-2])
    return next((s for s in servers if s.proc is not None and s.proc.pid == pid), None)


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """``probe()``'s first truthy answer, looking again every 50 ms up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)
    return found


def the_others(server: NimbusProcess, servers: list[NimbusProcess]) -> NimbusProcess:
    return next(s for s in servers if s is not server)


# -- an SQS event source mapping -------------------------------------------------------------


def mapping_owner(server: NimbusProcess, mapping_uuid: str) -> str | None:
    found = httpx.get(f"{server.endpoint}/_nimbus/event-source-mappings", timeout=30).json()
    return next(m["Owner"] for m in found["EventSourceMappings"] if m["UUID"] == mapping_uuid)


def send(sqs: Any, url: str, numbers: range) -> None:
    for start in range(numbers.start, numbers.stop, 10):
        entries = [{"Id": str(i), "MessageBody": str(i)}
                   for i in range(start, min(numbers.stop, start + 10))]  # fmt: skip
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def backlog(sqs: Any, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(got[name]) for name in names)


def deliveries(posts: list[list[dict[str, int]]]) -> list[dict[str, int]]:
    return [item for batch in posts for item in batch]


def test_a_mapping_s_poller_moves_to_the_survivor_and_loses_no_message(
    two: list[NimbusProcess], sink: Sink
) -> None:
    a, _ = two
    lam = a.client()
    sqs = a.client("sqs")
    # A short visibility timeout: what the dead owner held comes back soon after the kill.
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}",
                           Attributes={"VisibilityTimeout": "5"})["QueueUrl"]  # fmt: skip
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]  # fmt: skip
    lam.create_function(FunctionName="reporter", Runtime="python3.12", Role=ROLE, Timeout=60,
                        Handler="app.handler", Code={"ZipFile": REPORTER},
                        Environment={"Variables": {"SINK": sink.url}})  # fmt: skip
    mapping = lam.create_event_source_mapping(
        FunctionName="reporter", EventSourceArn=arn, BatchSize=10
    )["UUID"]
    wait_for("the mapping enabled",
             lambda: lam.get_event_source_mapping(UUID=mapping)["State"] == "Enabled",
             60)  # fmt: skip
    owner = held_by(mapping_owner(a, mapping), two)
    assert owner is not None, "no server holds the mapping's lease"
    survivor = the_others(owner, two)
    sqs = survivor.client("sqs")

    # Sent before the kill: the owner is working through them when it dies.
    before, after = range(0, 200), range(200, 300)
    send(sqs, url, before)
    sink.wait_until(lambda posts: len(deliveries(posts)) >= 30, timeout=120)
    owner.stop(signal.SIGKILL)
    wait_sessions_ended(owner)
    # What the dead owner had received and not deleted, now final: nobody else receives
    # from the queue until the owner's lease has run out.
    in_flight = int(sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])[
        "Attributes"]["ApproximateNumberOfMessagesNotVisible"])  # fmt: skip
    assert in_flight > 0  # the kill caught batches half-way (each lingers a second)
    send(sqs, url, after)

    # Everything is delivered once the lease has run out and the survivor polls, and
    # the queue empties (what the dead owner held comes back after its visibility timeout).
    everything = set(before) | set(after)
    sink.wait_until(lambda posts: {d["id"] for d in deliveries(posts)} >= everything,
                    timeout=MAPPING_TTL_MS / 1000 + SLACK_S)  # fmt: skip
    wait_for("the queue to empty", lambda: backlog(sqs, url) == 0, SLACK_S)
    assert held_by(mapping_owner(survivor, mapping), two) is survivor
    seen = deliveries(sink.received)
    counts = Counter(d["id"] for d in seen)
    assert set(counts) == everything  # nothing lost, nothing made up
    # At least once: every message the dead owner held at the kill came back once (its
    # second receive), and only those ran twice; everything else ran exactly once.
    redelivered = Counter(d["id"] for d in seen if d["count"] > 1)
    assert len(redelivered) == in_flight and set(redelivered.values()) <= {1}
    assert {i for i, n in counts.items() if n > 1} <= set(redelivered)
    assert max(counts.values()) <= 2
    assert all(counts[i] == 1 and i not in redelivered for i in after)


# -- a schedule ------------------------------------------------------------------------------


def scheduler_owner(database_url: str) -> str | None:
    """The scheduler lease's unexpired owner, read from the installation's store."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT owner, expires_ms FROM leases WHERE key = :k"),
                               {"k": SCHEDULER_LEASE}).first()  # fmt: skip
    finally:
        engine.dispose()
    if row is None or row.expires_ms <= time.time() * 1000:
        return None
    return str(row.owner)


def tick_of(record: dict[str, Any]) -> datetime:
    return datetime.strptime(record["requestPayload"]["tick"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )


def test_a_schedule_keeps_firing_from_the_survivor(
    two: list[NimbusProcess], installation: dict[str, str], sink: Sink
) -> None:
    database = installation["NIMBUS_DATABASE_URL"]
    owner = wait_for("a scheduler lease holder",
                     lambda: held_by(scheduler_owner(database), two), 30)  # fmt: skip
    survivor = the_others(owner, two)
    lam = owner.client()
    function_arn = lam.create_function(
        FunctionName="ticks", Runtime="python3.12", Role=ROLE, Timeout=60,
        Handler="app.handler", Code={"ZipFile": RECORDING},
    )["FunctionArn"]  # fmt: skip
    lam.put_function_event_invoke_config(
        FunctionName="ticks", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
    )
    # The shortest rate there is; a rate schedule fires at once, then every minute.
    owner.client("scheduler").create_schedule(
        Name="every-minute", ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": function_arn, "RoleArn": ROLE,
                "Input": json.dumps({"tick": "<aws.scheduler.scheduled-time>"})},
    )  # fmt: skip
    first = tick_of(sink.wait_until(lambda records: len(records) >= 1, timeout=60)[0])
    owner.stop(signal.SIGKILL)
    killed = datetime.now(UTC)

    # The next tick, a minute after the first, comes from the survivor: the dead owner's
    # lease runs out within 30 s of the kill and the survivor looks every 10 s, so it
    # holds the lease before that minute is over.
    records = sink.wait_until(
        lambda records: any(tick_of(r) > killed for r in records),
        timeout=60 + SCHEDULER_TTL_MS / 1000 + SLACK_S,
    )
    assert held_by(scheduler_owner(database), two) is survivor
    ticks = sorted({tick_of(r) for r in records})
    # No tick lost or added on the way: the first, then one a minute, from the survivor.
    assert ticks[0] == first
    assert [(t - first).total_seconds() for t in ticks] == [60 * k for k in range(len(ticks))]
    assert ticks[-1] > killed
