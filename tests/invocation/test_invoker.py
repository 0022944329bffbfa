"""The synchronous invoker, on real stores, a real limiter and log store, and the fake
sandbox manager (no root, no processes).

Covers: a successful invocation's ``InvokeResult``, the environment spec and invocation
it asks for, its log (init output, START, END, REPORT with and without Init Duration)
and stored log record; qualifiers (version, alias); function errors, timeouts and
crashes (and which of them cost the warm environment); init errors turned into a
function error response; DryRun; unrunnable layers; reserved and account concurrency
-> TooManyRequests, and the limiter's slot given back on every path.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nimbus.errors import InvalidParameterValue, ResourceNotFound, TooManyRequests
from nimbus.invocation.concurrency import ACCOUNT_REASON, RESERVED_REASON
from nimbus.models import LATEST, Alias, LayerRef
from nimbus.observe.logs import InvocationLog
from nimbus.sandbox import SandboxError
from tests.fakes import (
    SHA,
    WAIT_S,
    FakeSandboxManager,
    Handler,
    Invocations,
    crashes,
    create_function,
    fails,
    init_error,
    make_invoker,
    open_stores,
    publish,
    raises,
    returns,
    sequence,
    times_out,
)

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
LAYER = "arn:aws:lambda:us-east-1:000000000000:layer:old:1"

ROOT = "Root=1-5759e988-bd862e3fe1be46a994272793"  # a caller's trace header


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Callable[..., Invocations]]:
    """``build(**config)``: the invoker over stores with function ``fn`` (256 MB, 5 s,
    variable A=1, published as version 1) and the fake manager."""
    made: list[Invocations] = []

    def make(**settings: object) -> Invocations:
        stores = open_stores(tmp_path / f"data{len(made)}", **settings)
        create_function(stores.functions, "fn", memory_size=256, timeout=5, environment={"A": "1"})
        publish(stores.functions, "fn")  # version 1
        manager = FakeSandboxManager(init_logs=b"init line\n")
        made.append(make_invoker(stores, manager))
        return made[-1]

    yield make
    for parts in made:
        await parts.close()
        parts.stores.close()


@pytest.fixture
def parts(build: Callable[..., Invocations]) -> Invocations:
    return build()


async def records(parts: Invocations, function: str = "fn") -> list[InvocationLog]:
    await parts.logs.flush()
    return parts.logs.read(function)


async def test_a_successful_invocation(parts: Invocations) -> None:
    parts.manager.handler = returns(b'{"ok": true}', b"hello\n", duration_ms=12.3, memory_mb=45)
    before = int(time.time() * 1000)
    result = await parts.invoker.invoke(
        "fn", None, b'{"x": 1}', client_context='{"c": 1}', trace_id=ROOT, request_id="r-1"
    )
    after = int(time.time() * 1000)
    assert result.payload == b'{"ok": true}'
    assert result.function_error is None
    assert (result.executed_version, result.request_id) == (LATEST, "r-1")
    assert result.log_text == (
        "init line\n"
        "START RequestId: r-1 Version: $LATEST\n"
        "hello\n"
        "END RequestId: r-1\n"
        "REPORT RequestId: r-1\tDuration: 12.30 ms\tBilled Duration: 25 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 45 MB\tInit Duration: 12.50 ms\t\n"
    )
    assert result.log_tail == result.log_text.encode()
    (env,) = parts.manager.created
    (invocation,) = env.invocations
    assert invocation.request_id == "r-1" and invocation.payload == b'{"x": 1}'
    assert invocation.invoked_function_arn == ARN
    # The caller's trace goes on, with this invocation's segment as the function's Parent.
    assert invocation.trace_id.startswith(ROOT + ";Parent=")
    assert invocation.client_context == '{"c": 1}'
    (record,) = await records(parts)
    assert record.request_id == "r-1" and record.function_name == "fn"
    assert record.version == LATEST and record.text == result.log_text
    assert record.log_stream == env.spec.log_stream
    assert (record.duration_ms, record.billed_ms) == (12.3, 25)  # init billed too
    assert (record.memory_size, record.max_memory_used) == (256, 45)
    assert record.init_ms == 12.5 and record.error_type is None
    assert before <= record.timestamp_ms <= after
    assert parts.limiter.in_flight() == 0


async def test_the_environment_spec_is_built_from_the_version(
    build: Callable[..., Invocations],
) -> None:
    parts = build()
    await parts.invoker.invoke("fn", None, b"{}")
    (spec,) = parts.manager.specs
    assert (spec.function_name, spec.version, spec.function_arn) == ("fn", LATEST, ARN)
    assert (spec.runtime, spec.handler) == ("python3.12", "app.handler")
    assert spec.code_dir == parts.code.tree_path(SHA) and spec.layer_dirs == []
    assert (spec.memory_mb, spec.timeout_s, spec.ephemeral_mb) == (256, 5, 512)
    assert spec.environment == {"A": "1"} and spec.network is True
    assert (spec.region, spec.log_group) == ("us-east-1", "/aws/lambda/fn")
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", spec.log_stream)
    # The tag nimbus:network=none runs the function without a network.
    offline = build()
    offline.stores.functions.update_tags("fn", {"nimbus:network": "None"})
    await offline.invoker.invoke("fn", None, b"{}")
    assert offline.manager.specs[0].network is False


async def test_a_warm_invocation_reports_no_init_and_gets_fresh_ids(parts: Invocations) -> None:
    await parts.invoker.invoke("fn", None, b"{}")
    warm = await parts.invoker.invoke("fn", None, b"{}")
    assert parts.manager.cold_starts == 1
    assert UUID.fullmatch(warm.request_id)
    assert warm.log_text.startswith(f"START RequestId: {warm.request_id} Version: $LATEST\n")
    assert "Init Duration" not in warm.log_text
    _, second = parts.manager.created[0].invocations
    assert second.request_id == warm.request_id
    assert second.trace_id is not None and second.trace_id.startswith("Root=1-")
    cold, warm_record = await records(parts)
    assert (cold.init_ms, warm_record.init_ms) == (12.5, None)


async def test_publishing_keeps_latest_warm_and_an_update_does_not(parts: Invocations) -> None:
    functions = parts.stores.functions
    await parts.invoker.invoke("fn", None, b"{}")
    before = functions.get_version("fn", LATEST).revision_id
    functions.update_latest("fn", lambda v: v, None)  # an update that changes nothing
    assert functions.publish("fn", None, None, None).version == "2"
    assert functions.get_version("fn", LATEST).revision_id not in (before, None)
    await parts.invoker.invoke("fn", None, b"{}")
    assert parts.manager.cold_starts == 1
    functions.update_latest("fn", lambda v: v.replace(memory_size=512), None)
    await parts.invoker.invoke("fn", None, b"{}")
    assert parts.manager.cold_starts == 2
    # The old deployment's environment is stopped (in the background).
    await asyncio.wait_for(parts.manager.created[0].stopped.wait(), WAIT_S)


async def test_versions_and_aliases_run_their_version(parts: Invocations) -> None:
    parts.stores.aliases.create(Alias("fn", "live", "1", "rev"))
    by_version = await parts.invoker.invoke("fn", "1", b"{}")
    by_alias = await parts.invoker.invoke("fn", "live", b"{}")
    assert by_version.executed_version == by_alias.executed_version == "1"
    assert f"START RequestId: {by_alias.request_id} Version: 1\n" in by_alias.log_text
    (env,) = parts.manager.created  # one environment for version 1, whatever the name
    assert env.spec.version == "1"
    assert [i.invoked_function_arn for i in env.invocations] == [f"{ARN}:1", f"{ARN}:live"]


async def test_a_function_error_keeps_the_environment(parts: Invocations) -> None:
    parts.manager.handler = fails("KeyError", "'name'", b"oops\n")
    result = await parts.invoker.invoke("fn", None, b"{}")
    assert result.function_error == "Unhandled"
    body = json.loads(result.payload)
    assert (body["errorType"], body["errorMessage"]) == ("KeyError", "'name'")
    assert "oops\nEND RequestId" in result.log_text
    await parts.invoker.invoke("fn", None, b"{}")
    assert parts.manager.cold_starts == 1
    first, _ = await records(parts)
    assert first.error_type == "KeyError"


@pytest.mark.parametrize(
    "handler, error_type, message",
    [
        (times_out(), "Sandbox.Timedout", "Task timed out after 5.00 seconds"),
        (crashes(), "Runtime.ExitError", "Runtime exited with error: signal: killed"),
    ],
    ids=["timeout", "crash"],
)
async def test_a_timeout_or_crash_is_a_function_error_that_costs_the_environment(
    parts: Invocations, handler: Handler, error_type: str, message: str
) -> None:
    parts.manager.handler = sequence(handler, returns())
    result = await parts.invoker.invoke("fn", None, b"{}", request_id="r-t")
    assert result.function_error == "Unhandled"
    body = json.loads(result.payload)
    assert body["errorType"] == error_type
    assert body["errorMessage"] == f"RequestId: r-t Error: {message}"
    assert parts.manager.created[0].stopped.is_set()
    again = await parts.invoker.invoke("fn", None, b"{}")
    assert again.function_error is None and "Init Duration" in again.log_text
    assert parts.manager.cold_starts == 2
    failed, _ = await records(parts)
    assert failed.error_type == error_type
    assert parts.limiter.in_flight() == 0


async def test_an_init_error_is_answered_as_a_function_error(parts: Invocations) -> None:
    parts.manager.init_errors = [init_error(logs=b"Traceback: no module\n", init_ms=7.5)]
    result = await parts.invoker.invoke("fn", None, b"{}", request_id="r-i")
    assert result.function_error == "Unhandled" and result.executed_version == LATEST
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ImportModuleError",
        "errorMessage": "Unable to import module 'app': No module named 'app'",
        "requestId": "r-i",
        "stackTrace": [],
    }
    assert result.log_text == (
        "Traceback: no module\n"
        "START RequestId: r-i Version: $LATEST\n"
        "END RequestId: r-i\n"
        "REPORT RequestId: r-i\tDuration: 7.50 ms\tBilled Duration: 8 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 0 MB\tInit Duration: 7.50 ms\t\n"
    )
    (record,) = await records(parts)
    assert record.error_type == "Runtime.ImportModuleError" and record.init_ms == 7.5
    assert record.log_stream == "" and record.text == result.log_text
    assert parts.limiter.in_flight() == 0 and parts.pool.stats() == {"idle": 0, "busy": 0}
    assert (await parts.invoker.invoke("fn", None, b"{}")).function_error is None  # retried


async def test_an_init_error_body_keeps_its_own_members(parts: Invocations) -> None:
    body = {"errorType": "Custom", "errorMessage": "m", "stackTrace": ["line 1"]}
    parts.manager.init_error = init_error("Custom", "m", payload=json.dumps(body).encode())
    result = await parts.invoker.invoke("fn", None, b"{}", request_id="r-c")
    assert json.loads(result.payload) == {**body, "requestId": "r-c"}


async def test_a_plain_text_init_error_body_is_still_a_function_error(parts: Invocations) -> None:
    parts.manager.init_error = init_error("Runtime.Unknown", "boom", payload=b"boom")
    result = await parts.invoker.invoke("fn", None, b"{}", request_id="r-t")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorMessage": "boom",
        "errorType": "Runtime.Unknown",
        "requestId": "r-t",
        "stackTrace": [],
    }


async def test_dry_run_resolves_without_running(parts: Invocations) -> None:
    parts.stores.aliases.create(Alias("fn", "live", "1", "rev"))
    assert (await parts.invoker.dry_run("fn", None)).version == LATEST
    assert (await parts.invoker.dry_run("fn", "live")).version == "1"
    for name, qualifier in (("ghost", None), ("fn", "9"), ("fn", "nope")):
        with pytest.raises(ResourceNotFound):
            await parts.invoker.dry_run(name, qualifier)
    assert parts.manager.specs == [] and await records(parts) == []


async def test_layers_stored_before_nimbus_kept_layers_are_refused(parts: Invocations) -> None:
    parts.stores.functions.update_latest(
        "fn", lambda v: v.replace(layers=[LayerRef(LAYER)], revision_id=str(uuid.uuid4())), None
    )
    for call in (
        lambda: parts.invoker.dry_run("fn", None),
        lambda: parts.invoker.invoke("fn", None, b"{}"),
    ):
        with pytest.raises(InvalidParameterValue) as info:
            await call()
        assert LAYER in info.value.message and "PublishLayerVersion" in info.value.message
    assert parts.manager.specs == [] and parts.limiter.in_flight() == 0
    assert (await parts.invoker.invoke("fn", "1", b"{}")).function_error is None


async def test_a_reservation_of_zero_throttles_every_invocation(parts: Invocations) -> None:
    parts.stores.functions.set_reserved_concurrency("fn", 0, 1000, 100)
    with pytest.raises(TooManyRequests) as info:
        await parts.invoker.invoke("fn", None, b"{}")
    assert info.value.extra == {"Reason": RESERVED_REASON} and info.value.status == 429
    assert parts.manager.specs == []


async def test_a_reservation_bounds_invocations_in_flight(parts: Invocations) -> None:
    parts.stores.functions.set_reserved_concurrency("fn", 1, 1000, 100)
    parts.manager.hold_invocations()
    admitted: list[str] = []  # on_run: what an async event's AsyncEventAge is taken at
    first = asyncio.ensure_future(parts.invoker.invoke(
        "fn", None, b"{}", on_run=lambda: admitted.append("first")))
    await parts.manager.next_invocation()
    assert parts.limiter.in_flight("fn") == 1 and admitted == ["first"]
    with pytest.raises(TooManyRequests) as info:
        await parts.invoker.invoke("fn", None, b"{}", on_run=lambda: admitted.append("2nd"))
    assert info.value.extra == {"Reason": RESERVED_REASON}
    assert admitted == ["first"]  # the throttled one was never admitted
    parts.manager.release_invocations(2)
    await first
    assert parts.limiter.in_flight("fn") == 0
    assert (await parts.invoker.invoke("fn", None, b"{}")).function_error is None
    assert parts.manager.cold_starts == 1  # the throttled call never reached the pool


async def test_the_account_limit_leaves_out_what_is_reserved(
    build: Callable[..., Invocations],
) -> None:
    parts = build(concurrency_limit=3, unreserved_minimum=0)
    functions = parts.stores.functions
    for name in ("a", "b"):
        create_function(functions, name)
    functions.set_reserved_concurrency("fn", 2, 3, 0)  # 3 - 2: one unreserved slot
    parts.manager.hold_invocations()
    first = asyncio.ensure_future(parts.invoker.invoke("a", None, b"{}"))
    await parts.manager.next_invocation()
    with pytest.raises(TooManyRequests) as info:
        await parts.invoker.invoke("b", None, b"{}")
    assert info.value.extra == {"Reason": ACCOUNT_REASON}
    # The reserved function still has its own two slots.
    reserved = asyncio.ensure_future(parts.invoker.invoke("fn", None, b"{}"))
    await parts.manager.next_invocation()
    assert parts.limiter.in_flight() == 1 and parts.limiter.in_flight("fn") == 1
    parts.manager.release_invocations(3)
    await asyncio.gather(first, reserved)
    assert (await parts.invoker.invoke("b", None, b"{}")).function_error is None
    assert parts.limiter.in_flight() == 0


async def test_a_failure_of_the_execution_layer_gives_the_slot_back(parts: Invocations) -> None:
    parts.manager.handler = raises(SandboxError("the zygote died"))
    with pytest.raises(SandboxError):
        await parts.invoker.invoke("fn", None, b"{}")
    assert parts.limiter.in_flight() == 0 and parts.pool.stats() == {"idle": 0, "busy": 0}
    assert await records(parts) == []
