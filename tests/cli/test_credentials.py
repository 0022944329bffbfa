"""`nimbus credentials` prints the keys of the server it is pointed at, and refuses,
saying where to look, when it finds no server's data dir: it never makes a second pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.nimbus_process import NimbusProcess


def credentials(cwd: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    return subprocess.run([sys.executable, "-m", "nimbus", "credentials", *args], cwd=cwd,
                          capture_output=True, text=True, env={**clean, **(env or {})},
                          timeout=60, check=False)


def test_refuses_without_a_data_dir(tmp_path: Path) -> None:
    elsewhere = credentials(tmp_path)
    assert elsewhere.returncode == 2 and elsewhere.stdout == ""
    assert "--data-dir" in elsewhere.stderr and "NIMBUS_DATA_DIR" in elsewhere.stderr
    assert list(tmp_path.iterdir()) == []  # no .nimbus, no second key pair
    (tmp_path / "empty").mkdir()
    empty = credentials(tmp_path, "--data-dir", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "credentials.json" in empty.stderr
    assert list((tmp_path / "empty").iterdir()) == []


def test_prints_the_servers_pair(nimbus: NimbusProcess, tmp_path: Path) -> None:
    stored = json.loads((nimbus.data_dir / "credentials.json").read_text())
    for args, env in [(("--data-dir", str(nimbus.data_dir)), None),
                      ((), {"NIMBUS_DATA_DIR": str(nimbus.data_dir)})]:
        found = credentials(tmp_path, *args, env=env)
        assert found.returncode == 0, found.stderr
        assert f"export AWS_ACCESS_KEY_ID={stored['AccessKeyId']}" in found.stdout
    configured = credentials(tmp_path, env={"NIMBUS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                                            "NIMBUS_SECRET_ACCESS_KEY": "s" * 40})
    assert configured.returncode == 0 and "AKIAEXAMPLE" in configured.stdout
