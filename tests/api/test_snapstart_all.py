"""The installation setting snapstart_all: every Python 3.12+ function starts from a
template of its own configuration, $LATEST included; other runtimes as before."""

from __future__ import annotations

import base64
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.test_snapstart import _zip
from tests.conftest import ROLE

pytestmark = pytest.mark.sandbox
SERVER_ENV = {"NIMBUS_SNAPSTART_ALL": "true"}


def _invoke(lam: Any, name: str, hold: float) -> tuple[dict, str]:
    out = lam.invoke(FunctionName=name, LogType="Tail", Payload=json.dumps({"hold": hold}).encode())
    assert "FunctionError" not in out, out
    return json.loads(out["Payload"].read()), base64.b64decode(out["LogResult"]).decode()


def test_latest_starts_from_a_template_of_its_configuration(lam: Any) -> None:
    name = f"all-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": _zip()}, Timeout=10)
    first, _ = _invoke(lam, name, 0)
    # Two at once: the warm environment takes one, a new one (forked from the same
    # init, unique after it) the other.
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _invoke(lam, name, 0.3), range(2)))
    (a, log_a), (b, log_b) = results
    assert first["boot"] == a["boot"] == b["boot"]  # init ran once for the configuration
    assert len({first["uuid"], a["uuid"], b["uuid"]}) == 3
    assert a["pid"] != b["pid"]
    restored = [log for log in (log_a, log_b) if re.search(r"Restore Duration: [\d.]+ ms", log)]
    assert len(restored) == 1 and "Init Duration" not in log_a + log_b
    # A new configuration: a new template (the old init is not reused).
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MODE": "b"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    after, _ = _invoke(lam, name, 0)
    assert after["boot"] != first["boot"]


def test_other_runtimes_start_as_before(lam: Any) -> None:
    name = f"all-old-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": _zip()}, Timeout=10)
    _, log = _invoke(lam, name, 0)
    init = re.search(r"Init Duration: ([\d.]+) ms", log)
    assert init is not None and float(init.group(1)) >= 500
