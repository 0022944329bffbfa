"""Environments get Lambda's 1,024 open files, lowered from the limit they inherit: a
server whose hard RLIMIT_NOFILE is below that, and which may not raise it, refuses at
preparation with what to fix, instead of failing every cold start with a bare
"ValueError: not allowed to raise maximum limit"."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

PR_CAPBSET_DROP = 24
CAP_SYS_RESOURCE = 24
CHECK = """
import asyncio, json, sys
from nimbus.sandbox import host, IsolationUnavailable, SandboxManager
from tests.sandbox.conftest import package, spec
from pathlib import Path

async def main():
    manager = SandboxManager(Path(sys.argv[1]) / "work", isolation="process", stem_cells=0)
    try:
        code = package(Path(sys.argv[1]), {"app.py": "def handler(e, c):\\n    return 1\\n"})
        env = await manager.start(spec(code))
        await env.stop()
        return None
    except IsolationUnavailable as exc:
        return str(exc)
    finally:
        await manager.close()

print(json.dumps({"doctor": host.descriptor_limit(1024, apply=False),
                  "start": asyncio.run(main())}))
"""


def _run(tmp_path: Path, hard: int, capable: bool) -> dict:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 256), hard))
        # Root after exec, without the capability that raises limits.
        dropped = capable or ctypes.CDLL(None).prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE,
                                                     0, 0, 0) == 0
        if not dropped:
            raise OSError("PR_CAPBSET_DROP failed")

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path)], preexec_fn=limit,
                          capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "PYTHONPATH": f"{root}/src:{root}",
                               "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to lower the limit and drop a capability")
def test_a_hard_limit_below_lambdas_that_cannot_be_raised_is_refused_with_what_to_fix(
        tmp_path: Path) -> None:
    seen = _run(tmp_path, 512, capable=False)
    for problem in (seen["doctor"], seen["start"]):
        assert "at most 512 files (hard RLIMIT_NOFILE)" in problem
        assert "ulimit -Hn 1024" in problem


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to lower the limit")
def test_a_hard_limit_of_lambdas_is_enough_without_raising_it(tmp_path: Path) -> None:
    assert _run(tmp_path, 1024, capable=False) == {"doctor": None, "start": None}


def _may_raise_limits() -> bool:
    """Whether this process may raise a hard limit (from 512, in a child: a hard limit
    already at the kernel's ceiling says nothing)."""
    pid = os.fork()
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@pytest.mark.skipif(os.geteuid() != 0 or not _may_raise_limits(),
                    reason="needs root allowed to raise limits (CAP_SYS_RESOURCE in the "
                    "host's user namespace; containers often lack it)")
def test_root_raises_a_low_hard_limit_and_functions_start(tmp_path: Path) -> None:
    assert _run(tmp_path, 512, capable=True) == {"doctor": None, "start": None}
