"""Helpers of the CLI tests, which run ``nimbus`` as a user runs it (against ``nimbus``, a
live server of the test's own, from tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.nimbus_process import NimbusProcess


def nimbus_cli(server: NimbusProcess | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``nimbus *args`` pointed at ``server`` (at no server if None)."""
    env = dict(os.environ)
    if server is not None:
        env["NIMBUS_ENDPOINT"] = server.endpoint
    return subprocess.run(
        [sys.executable, "-m", "nimbus", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
