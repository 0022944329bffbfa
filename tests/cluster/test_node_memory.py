"""A worker node announces the memory its own cgroup leaves it (a pod's limit, a unit's
MemoryMax), not the whole machine's, so placement does not send a pod more than it holds."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nimbus.sandbox import cgroups

PROBE = ("from nimbus.sandbox.cgroups import memory_headroom_mb\n"
         "from nimbus.cluster.announcer import _memory_mb\n"
         "print(memory_headroom_mb(), _memory_mb()[1])\n")


def _memory_dir() -> Path:
    found = cgroups._hierarchy()
    own = cgroups._own_cgroups()
    if isinstance(found, tuple):
        mount, root = found
        return Path(cgroups._join(mount, root, own.get("", "/")))
    mount, root = found["memory"]
    return Path(cgroups._join(mount, root, own.get("memory", "/")))


@pytest.mark.sandbox
def test_the_announced_memory_is_what_the_nodes_cgroup_leaves() -> None:
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    parent = _memory_dir()
    v2 = (parent / "memory.max").exists() or not (parent / "memory.limit_in_bytes").exists()
    limit_file = "memory.max" if v2 else "memory.limit_in_bytes"
    group = parent / f"nimbus-headroom-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / limit_file).write_text(str(300 * 1024 * 1024))
        run = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
        headroom, announced = (int(x) for x in run.stdout.split())
        assert 200 < headroom <= 300, run.stdout  # the limit, less the probe's own use
        assert announced == headroom
    finally:
        group.rmdir()
