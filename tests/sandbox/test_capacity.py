"""Sandbox identity and capacity: every process's uids are a range of the host's no other
nimbus process holds (sandbox/uid_range.py), as many as the concurrency limit needs; a
manager whose uids are all taken evicts idle environments of other functions (the
pool's ``evict_idle``); with nothing to evict a cold start is a 429, never a 500.

The live-server burst runs Lambda's default limit (1,000) scaled down for a 2-core test
machine: limit 100 with 150 concurrent invokes stands for 1,100 against 1,000, by the
same mechanism (uids per process = limit + headroom, eviction, 429s).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nimbus.errors import TooManyRequests
from nimbus.invocation.pool import Pool, PoolKey, Ran
from nimbus.sandbox import SandboxManager
from nimbus.sandbox.errors import CapacityExhausted
from nimbus.sandbox.uid_range import (
    REGION_END,
    REGION_FIRST,
    SLOT_SIZE,
    claim,
    per_process,
    preferred_slot,
)
from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sandbox.conftest import invocation, package, spec

WHO = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"uid": os.getuid()}
"""

# -- the range of uids each process claims ---------------------------------------------


def spans(*claims: object) -> list[range]:
    return [range(c.first, c.first + c.count) for c in claims]  # type: ignore[attr-defined]


def disjoint(ranges: list[range]) -> bool:
    ordered = sorted(ranges, key=lambda r: r.start)
    return all(a.stop <= b.start for a, b in itertools.pairwise(ordered))


def test_claims_of_one_host_never_overlap_and_come_back_when_released(tmp_path: Path) -> None:
    locks = tmp_path / "slots"
    a = claim(tmp_path / "a", per_process(1000), locks)
    b = claim(tmp_path / "b", per_process(1000), locks)
    again = claim(tmp_path / "a", per_process(1000), locks)  # a second process, same dir
    ranges = spans(a, b, again)
    assert disjoint(ranges)
    assert all(r.start >= REGION_FIRST and r.stop <= REGION_END for r in ranges)
    assert a.first == REGION_FIRST + preferred_slot(tmp_path / "a") * SLOT_SIZE
    assert a.count == per_process(1000) >= 1000
    a.close()
    back = claim(tmp_path / "a", per_process(1000), locks)
    assert back.first == a.first  # the slot is free again: the same range as before
    for c in (b, again, back):
        c.close()


def test_a_range_held_by_another_process_is_skipped_until_it_exits(tmp_path: Path) -> None:
    locks, work = tmp_path / "slots", tmp_path / "work"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from nimbus.sandbox.uid_range import claim\n"
         "c = claim(Path(sys.argv[1]), 100, Path(sys.argv[2])); print(c.first, flush=True)\n"
         "sys.stdin.read()",
         str(work), str(locks)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        theirs = int(holder.stdout.readline())
        mine = claim(work, 100, locks)
        assert mine.first != theirs and disjoint([*spans(mine), range(theirs, theirs + 100)])
        mine.close()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    after = claim(work, 100, locks)  # the kernel dropped the dead holder's lock
    assert after.first == theirs
    after.close()


def test_a_limit_beyond_one_slot_claims_consecutive_slots(tmp_path: Path) -> None:
    locks = tmp_path / "slots"
    big = claim(tmp_path / "big", per_process(100_000), locks)
    other = claim(tmp_path / "big", per_process(1000), locks)
    assert len(big.slots) == -(-per_process(100_000) // SLOT_SIZE) == 2
    assert disjoint(spans(big, other))
    big.close()
    other.close()


# -- a full manager: eviction, then 429 ------------------------------------------------


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[SandboxManager, Pool, Path]]:
    """A real manager with room for two environments, and its pool."""
    manager = SandboxManager(tmp_path / "work", stem_cells=0, uid_count=2)
    pool = Pool(manager, idle_seconds=300)
    yield manager, pool, package(tmp_path, {"app.py": WHO})
    await pool.close()
    await manager.close()


async def run(pool: Pool, name: str, code: Path) -> Ran:
    key = PoolKey(name, "$LATEST", "rev-1")
    return await pool.run(key, lambda: spec(code, name=name), invocation(b"{}"))


def uid_of(ran: Ran) -> int:
    return int(json.loads(ran.outcome.payload)["uid"])


@pytest.mark.sandbox
async def test_when_uids_run_out_the_least_recently_used_idle_environment_makes_room(
    small: tuple[SandboxManager, Pool, Path],
) -> None:
    manager, pool, code = small
    a, b = await run(pool, "a", code), await run(pool, "b", code)
    assert a.cold and b.cold and {uid_of(a), uid_of(b)} == set(manager.uids)
    assert manager.uids.start >= REGION_FIRST  # a claimed range, not a fixed one
    c = await run(pool, "c", code)  # no uid free: a's idle environment (the oldest) goes
    assert c.cold and uid_of(c) == uid_of(a)
    assert not (await run(pool, "b", code)).cold  # b's stayed warm
    assert (await run(pool, "a", code)).cold  # a's was evicted (c's makes room now)
    assert len(manager.environments) == 2


@pytest.mark.sandbox
async def test_with_nothing_idle_to_evict_a_cold_start_is_a_429(
    small: tuple[SandboxManager, Pool, Path],
) -> None:
    manager, pool, code = small
    held = PoolKey("held", "$LATEST", "rev-1")
    await pool.provision(held, lambda: spec(code, name="held"), 2)  # never evicted
    assert pool.provisioned(held) == (2, None)
    with pytest.raises(CapacityExhausted) as info:
        await run(pool, "other", code)
    error = info.value
    assert isinstance(error, TooManyRequests) and error.status == 429
    assert error.body() == {
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ConcurrentInvocationLimitExceeded",
    }
    assert len(manager.environments) == 2  # nothing half-started was left behind
    pool.unprovision(held)  # now ordinary idle environments: evictable
    assert (await run(pool, "other", code)).cold


# -- live servers -----------------------------------------------------------------------

RANGE_LINE = re.compile(r"sandbox uids (\d+)-(\d+)")


def ranges_of(server: NimbusProcess) -> list[range]:
    found = (RANGE_LINE.search(line) for line in server.output)
    return [range(int(m[1]), int(m[2]) + 1) for m in found if m]


def create(server: NimbusProcess, name: str) -> None:
    server.client().create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Timeout=60, Code={"ZipFile": make_zip({"app.py": WHO})},
    )  # fmt: skip


@pytest.mark.sandbox
def test_two_servers_on_one_host_run_functions_as_disjoint_uids(tmp_path: Path) -> None:
    env = {"NIMBUS_ASYNC_WORKERS": "0"}
    with live_server(tmp_path / "one", env) as one, live_server(tmp_path / "two", env) as two:
        uids = []
        for server in (one, two):
            create(server, "who")
            out = server.client().invoke(FunctionName="who", Payload=b"{}")
            uids.append(json.loads(out["Payload"].read())["uid"])
        (first,), (second,) = ranges_of(one), ranges_of(two)
        assert disjoint([first, second])
        assert uids[0] in first and uids[1] in second


async def burst(server: NimbusProcess, name: str, count: int) -> list[httpx.Response]:
    """``count`` sync invokes at once, as raw Lambda API calls (log tail included)."""
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations"
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(*(
            client.post(url, content=b'{"sleep": 2}', headers={"X-Amz-Log-Type": "Tail"})
            for _ in range(count)
        ))  # fmt: skip


def cold_starts(responses: list[httpx.Response]) -> int:
    tails = (base64.b64decode(r.headers.get("X-Amz-Log-Result", "")) for r in responses)
    return sum(b"Init Duration" in tail for tail in tails)


@pytest.mark.sandbox
def test_a_burst_beyond_the_limit_gets_200s_and_429s_and_never_a_500(tmp_path: Path) -> None:
    limit = 100
    env = {"NIMBUS_CONCURRENCY_LIMIT": str(limit), "NIMBUS_ASYNC_WORKERS": "0"}
    with live_server(tmp_path / "data", env) as server:
        create(server, "first")
        create(server, "second")
        responses = asyncio.run(burst(server, "first", limit + limit // 2))
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) <= {200, 429}, statuses
        assert statuses[200] >= 1 and statuses[429] >= 1, statuses
        for throttled in (r for r in responses if r.status_code == 429):
            assert throttled.headers["X-Amzn-ErrorType"].startswith("TooManyRequestsException")
            assert throttled.json()["Reason"] == "ConcurrentInvocationLimitExceeded"
        first_envs = cold_starts(responses)
        # Another function at the full limit right after: its environments need uids
        # the first function's idle ones hold, so they are evicted, not refused.
        second = asyncio.run(burst(server, "second", limit))
        assert Counter(r.status_code for r in second) == Counter({200: limit})
        needed = first_envs + cold_starts(second) - per_process(limit)
        evictions = sum("evicting an idle environment" in line for line in server.output)
        assert evictions >= needed
        uids = {json.loads(r.content)["uid"] for r in responses + second if r.status_code == 200}
        (claimed,) = ranges_of(server)
        assert uids <= set(claimed) and len(claimed) == per_process(limit)


HELD = """
import socket
def handler(event, context):
    # Wait at the test's barrier (on the host's loopback, which the test servers allow)
    # until the test lets every admitted invocation go.
    with socket.create_connection(("127.0.0.1", event["barrier"]), timeout=600) as s:
        s.settimeout(600)
        s.recv(1)
    return {"ok": True}
"""


class Barrier:
    """Holds the connections of functions that reached it until ``release``."""

    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def hold(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.held.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=2048)
        return self.server.sockets[0].getsockname()[1]

    def release(self) -> None:
        for writer in self.held:
            writer.write(b"!")
            writer.close()
        assert self.server is not None
        self.server.close()


@pytest.mark.sandbox
def test_1100_concurrent_invokes_at_the_default_limit_get_200s_and_429s(tmp_path: Path) -> None:
    """The default account limit (1,000), 1,100 invocations at once, every one held in
    its function until all arrived: exactly the limit runs, the rest are throttled with
    Lambda's 429, and nothing answers 500 (an environment and a uid per invocation)."""
    limit, count = 1000, 1100

    async def scenario(server: NimbusProcess) -> tuple[list[httpx.Response], int]:
        barrier = Barrier()
        port = await barrier.start()
        url = f"{server.endpoint}/2015-03-31/functions/held/invocations"
        body = json.dumps({"barrier": port}).encode()
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(timeout=900, limits=limits) as client:
            calls = [asyncio.ensure_future(client.post(url, content=body))
                     for _ in range(count)]
            # Until every admitted invocation is held and every other one answered.
            while len(barrier.held) + sum(c.done() for c in calls) < count:
                done = [c for c in calls if c.done() and c.exception() is not None]
                assert not done, done[0].exception()
                await asyncio.sleep(0.2)
            running = len(barrier.held)
            barrier.release()
            return list(await asyncio.gather(*calls)), running

    env = {"NIMBUS_ASYNC_WORKERS": "0"}  # the default concurrency limit
    with live_server(tmp_path / "data", env) as server:
        server.client().create_function(
            FunctionName="held", Runtime="python3.12", Role=ROLE, Handler="app.handler",
            Timeout=900, MemorySize=128, Code={"ZipFile": make_zip({"app.py": HELD})},
        )  # fmt: skip
        responses, running = asyncio.run(scenario(server))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({200: limit, 429: count - limit}), statuses
    failed = [r.text for r in responses if r.headers.get("X-Amz-Function-Error")]
    assert not failed, (len(failed), failed[0])  # each reached the barrier and was let go
    assert running == limit
    for throttled in (r for r in responses if r.status_code == 429):
        assert throttled.json()["Reason"] == "ConcurrentInvocationLimitExceeded"
