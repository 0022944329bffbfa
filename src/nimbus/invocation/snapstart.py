"""SnapStart at PublishVersion: a published version's template is made in the background
(its init runs once), the version ``Pending`` until then, as on Lambda.

Lambda publishes a SnapStart version in State ``Pending`` (StateReasonCode ``Creating``)
while it initialises the function and snapshots it, ``Active`` once the snapshot is
ready, ``Failed`` (StateReasonCode ``FunctionError``, or ``FunctionError.InitTimeout``)
when init fails; a Pending version cannot be invoked (ResourceConflictException). nimbus'
snapshot is the version's template (``nimbus.sandbox.templates``).

A template reaped later (idle) is made again by the next cold start, as before. A
version left Pending by a server that stopped meanwhile is prepared again by the next
invocation that finds it Pending (and refused meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nimbus.errors import ResourceConflict
from nimbus.models import FunctionRecord, FunctionVersion
from nimbus.sandbox import EnvironmentSpec, InitError, SandboxManager
from nimbus.store.functions import FunctionStore
from nimbus.threads import blocking

log = logging.getLogger(__name__)

SpecFn = Callable[[FunctionVersion, FunctionRecord], EnvironmentSpec]


def not_ready(state: str) -> ResourceConflict:
    """What Lambda answers an invocation of a version that is not Active."""
    return ResourceConflict(
        "The operation cannot be performed at this time. The function is currently in the "
        f"following state: {state}"
    )


def failure(err: InitError) -> tuple[str, str]:
    """(StateReason, StateReasonCode) of a version whose snapshot init failed."""
    if err.error_type == "Sandbox.Timedout":
        return (f"Lambda could not create the snapshot: {err.error_message}",
                "FunctionError.InitTimeout")
    return (f"Lambda could not create the snapshot: the function's init failed with "
            f"{err.error_type}: {err.error_message}", "FunctionError")


class Snapshots:
    """The templates being made for published versions, one task per version."""

    def __init__(self, functions: FunctionStore, manager: SandboxManager, spec: SpecFn,
                 ensure_code: Callable[[FunctionVersion], Awaitable[None]] | None = None,
                 ) -> None:
        self._functions = functions
        self._manager = manager
        self._spec = spec
        self._ensure_code = ensure_code  # the package onto this node (cluster), if need be
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def pending(self, version: FunctionVersion) -> bool:
        return (version.function_name, version.version) in self._tasks

    def prepare(self, version: FunctionVersion, record: FunctionRecord) -> None:
        """Make ``version``'s template in the background (if not under way already);
        the version becomes Active or Failed when done."""
        ident = (version.function_name, version.version)
        if ident in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._make(version, record))
        self._tasks[ident] = task
        task.add_done_callback(lambda _t: self._tasks.pop(ident, None))

    async def _make(self, version: FunctionVersion, record: FunctionRecord) -> None:
        name, number = version.function_name, version.version
        state, reason, code = "Active", None, None
        try:
            if self._manager.isolation == "namespace":
                # "process" isolation has no templates: environments start as usual.
                if self._ensure_code is not None:
                    await self._ensure_code(version)
                await self._manager.templates.ensure(self._spec(version, record))
        except InitError as err:
            state = "Failed"
            reason, code = failure(err)
            log.warning("SnapStart template for %s:%s failed: %s", name, number, err)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the sandbox could not make it: say why, on the version
            state, reason, code = "Failed", f"Lambda could not create the snapshot: {exc}", \
                "InternalError"
            log.exception("SnapStart template for %s:%s failed", name, number)
        await blocking(self._functions.set_state, name, number, state, reason, code)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
