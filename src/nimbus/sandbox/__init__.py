"""The execution layer: sandboxed execution environments forked from zygotes.

Server-side API (asyncio)::

    manager = SandboxManager(work_dir)            # isolation="namespace" by default
    env = await manager.start(spec)               # cold start, raises InitError
    outcome = await env.invoke(invocation)        # warm invoke
    await env.stop(); await manager.close()

``nimbus.sandbox.host.report()`` says what isolation this host allows (``nimbus doctor``).
What runs inside the zygote and the sandbox lives in ``nimbus.guest``; this package is
the host's side of it (cgroups, uids, stem cells, zygote handles, control channels).
"""

from nimbus.sandbox.environment import Environment
from nimbus.sandbox.errors import (
    EnvironmentGone,
    InitError,
    IsolationUnavailable,
    SandboxError,
    UnsupportedRuntime,
)
from nimbus.sandbox.manager import SandboxManager
from nimbus.sandbox.spec import EnvironmentSpec, Invocation, Outcome

__all__ = [
    "Environment",
    "EnvironmentGone",
    "EnvironmentSpec",
    "InitError",
    "Invocation",
    "IsolationUnavailable",
    "Outcome",
    "SandboxError",
    "SandboxManager",
    "UnsupportedRuntime",
]
