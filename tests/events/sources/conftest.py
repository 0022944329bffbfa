"""Helpers for the broker source tests: SourceOptions for a fresh mapping, and an owner
that receives records and is then killed with SIGKILL (a poller dying mid-batch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import asdict
from typing import Any

from nimbus.events.sources.source import SourceOptions

FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def options(uri: str, batch_size: int = 10, **extra: Any) -> SourceOptions:
    """A new mapping (fresh uuid) on ``uri``."""
    return SourceOptions(
        mapping_uuid=str(uuid.uuid4()),
        event_source_arn=uri,
        function_arn=FUNCTION_ARN,
        region="us-east-1",
        batch_size=batch_size,
        **extra,
    )


# Runs in a child process: open the source, receive ``count`` records without settling
# them, report their item ids on stdout, then wait to be killed.
OWNER = """
import asyncio, json, sys, importlib
from nimbus.events.sources.source import SourceOptions

async def main():
    module, name, opts, count = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    source = getattr(importlib.import_module(module), name)(SourceOptions(**opts))
    await source.open()
    ids = []
    while len(ids) < count:
        ids += [r.item_id for r in await source.receive(count - len(ids), 1.0)]
    print(json.dumps(ids), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def killed_owner(cls: type, opts: SourceOptions, count: int) -> list[str]:
    """Item ids of ``count`` records a source of ``cls`` received, unsettled, in a process
    that was then killed with SIGKILL (no close, no goodbye to the broker)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            OWNER,
            cls.__module__,
            cls.__name__,
            json.dumps(asdict(opts)),
            str(count),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert line, "the owner process died before receiving"
    return json.loads(line)
