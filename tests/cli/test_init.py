"""`nimbus init`: a project from a blueprint, as a user starts one; and each blueprint's
own tests pass where it is copied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import nimbus_cli

BLUEPRINTS = ["hello-http", "queue-worker", "latency-monitor", "ssl-expiry", "webhook-alert",
              "site-crawler", "feature-flags", "chatbot-webhook"]


def test_lists_blueprints() -> None:
    listed = nimbus_cli(None, "init")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert set(BLUEPRINTS) <= set(names)
    assert "function URL" in listed.stdout  # each with what its README says it is


@pytest.mark.parametrize("blueprint", BLUEPRINTS)
def test_init_copies_a_blueprint_whose_tests_pass(blueprint: str, tmp_path: Path) -> None:
    target = tmp_path / "project"
    made = nimbus_cli(None, "init", blueprint, str(target))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(target) and "nimbus dev" in made.stderr
    for name in ("README.md", "template.yaml", "app.py", "tests/test_app.py"):
        assert (target / name).is_file(), name
    assert "AWS::Serverless-2016-10-31" in (target / "template.yaml").read_text()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests"], cwd=target, capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout


def test_init_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    busy = nimbus_cli(None, "init", "hello-http", str(tmp_path / "busy"))
    assert busy.returncode == 2 and "is not empty" in busy.stderr
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]
    unknown = nimbus_cli(None, "init", "nope", str(tmp_path / "x"))
    assert unknown.returncode == 2 and "hello-http" in unknown.stderr
    assert not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    assert nimbus_cli(None, "init", "hello-http", str(tmp_path / "empty")).returncode == 0
