"""Shared fixtures and helpers: zips, live nimbus servers, the local PostgreSQL, and the
``sandbox`` and ``postgres`` markers.

A test marked ``sandbox`` (it runs functions: root, namespaces and cgroups) or ``postgres``
(it uses the PostgreSQL at NIMBUS_TEST_POSTGRES_URL) is skipped, with the reason, where this
host cannot give it that; where the environment variable CI is set it fails instead, since
CI must never pass by skipping. ``pytest -m "not sandbox"`` runs what needs neither root nor
namespaces."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

if TYPE_CHECKING:
    from nimbus.store.database import Database

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
# Functions in these tests call back to servers on the test host's loopback (sinks, test
# brokers, the nimbus API itself), which an isolated function network refuses by default:
# every server a test starts allows the host's 127.0.0.1, unless the test sets this empty
# (tests/sandbox/test_network.py checks the default, which allows none of it).
os.environ.setdefault("NIMBUS_FUNCTION_NETWORK_ALLOW", "127.0.0.1/32")
POSTGRES_URL = os.environ.get(
    "NIMBUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def make_zip(files: dict[str, str | bytes], **modes: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes.get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def zip_of(entries: list[tuple[str, str, str | bytes]]) -> bytes:
    """A zip of ``(kind, name, content)`` in order, kind ``file``, ``dir`` or ``link``
    (a Unix symlink whose target is ``content``), names written exactly as given."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names are what some tests are about
        for kind, name, content in entries:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" and not name.endswith("/") else ""))
            info.create_system = 3
            mode = {"file": 0o100644, "dir": 0o40755, "link": 0o120777}[kind]
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return buf.getvalue()


def escape_chain(victim: str, depth: int = 40) -> list[tuple[str, str, str | bytes]]:
    """The attack of [S zip escape]: ``s -> .``, then ``s/s/.../esc -> ../../..`` (each
    target harmless as text), then a file ``esc/<victim>`` written through them."""
    return [
        ("link", "s", "."),
        ("link", "s/" * depth + "esc", "../" * depth),
        ("file", "esc" + victim, "escaped\n"),
        ("file", "app.py", "def handler(event, context):\n    return 1\n"),
    ]


HELLO = make_zip({"app.py": "def handler(event, context):\n    return {'hello': event}\n"})


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: CI must never pass by skipping."""
    if os.environ.get("CI"):
        pytest.fail(f"required service unavailable in CI: {reason}")
    pytest.skip(reason)


@cache
def sandbox_problem() -> str | None:
    """Why this host cannot run functions in sandboxes, or None if it can."""
    if os.geteuid() != 0:
        return "sandboxed execution needs root (namespaces, cgroups, sandbox uids)"
    from nimbus.sandbox import host

    report = host.report()
    if not report.namespace_isolation:
        return "namespace isolation unavailable: " + "; ".join(
            f"{c.name}: {c.detail}" for c in report.problems
        )
    return None


@cache
def postgres_problem() -> str | None:
    """Why the local PostgreSQL cannot be used, or None if it can."""
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} unreachable: {exc}"
    finally:
        engine.dispose()
    return None


# What each marker needs, and the fixtures that need it: a test using one of those fixtures
# must carry the marker, so that deselecting the marker deselects it too.
NEEDS: dict[str, tuple[Callable[[], str | None], tuple[str, ...]]] = {
    "sandbox": (sandbox_problem, ("sandbox_manager",)),
    "postgres": (postgres_problem, ("postgres_admin",)),
}


# The brokers event source mappings poll, for tests marked ``broker("<name>", ...)``.
BROKERS: dict[str, tuple[str, int]] = {
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
    "nats": ("127.0.0.1", 4222),
    "mqtt": ("127.0.0.1", 1883),
}


@cache
def broker_problem(name: str) -> str | None:
    """Why the local broker ``name`` cannot be used, or None if it accepts connections."""
    host, port = BROKERS[name]
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"{name} broker at {host}:{port} unreachable: {exc}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "broker(*names): needs the local brokers named (redis, rabbitmq, nats, mqtt)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        f"{item.nodeid} uses {fixture} but is not marked {marker}"
        for item in items
        for marker, (_, fixtures) in NEEDS.items()
        for fixture in fixtures
        if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker)
    ]
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))


# How much each server had said when the running test began.
_SAID_BEFORE: dict[int, int] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A failed test's report shows what its servers said meanwhile (the last lines): in
    CI that is all there is to go on."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for server in NimbusProcess.running:
        said = server.output[_SAID_BEFORE.get(id(server), 0):]
        if said:
            report.sections.append(
                (f"nimbus {server.command} on port {server.port} said", "".join(said[-80:])))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture: skip (in CI, fail) a test whose markers ask for what is missing."""
    _SAID_BEFORE.clear()
    _SAID_BEFORE.update((id(s), len(s.output)) for s in NimbusProcess.running)
    for marker, (problem, _) in NEEDS.items():
        if item.get_closest_marker(marker) is not None:
            reason = problem()
            if reason:
                unavailable(reason)
    for marker in item.iter_markers("broker"):
        for name in marker.args:
            reason = broker_problem(name)
            if reason:
                unavailable(reason)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """The local PostgreSQL, for tests marked ``postgres``."""
    engine = sa.create_engine(POSTGRES_URL)
    yield engine
    engine.dispose()


def postgres_schema_url(admin: sa.Engine) -> Iterator[str]:
    """A private schema in the local PostgreSQL (dropped afterwards), as a URL."""
    schema = f"nimbus_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def migrated_postgres(admin: sa.Engine) -> Iterator[Database]:
    """A migrated store in a private schema of the local PostgreSQL (dropped afterwards)."""
    from nimbus.store.database import Database

    for url in postgres_schema_url(admin):
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend the store supports; tests using it run once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nimbus.db'}"
        return
    yield from postgres_schema_url(request.getfixturevalue("postgres_admin"))


# NIMBUS_TEST_CLUSTER=1 (``make test-cluster``): every server ``live_server`` starts is a
# cluster server with a worker node (see _cluster_server).
CLUSTER = bool(os.environ.get("NIMBUS_TEST_CLUSTER"))
# What a test reading the embedded SQLite file (``<data dir>/nimbus.db``) cannot do in cluster
# mode, where the installation's state is in PostgreSQL.
only_embedded = pytest.mark.skipif(
    CLUSTER, reason="reads <data dir>/nimbus.db, the embedded SQLite store; a cluster's "
    "state is in PostgreSQL")
# The admin pair a cluster-mode server with NIMBUS_API_AUTH=sigv4 is given when its test
# sets none (a cluster cannot generate its own: all its nodes must sign with one pair).
CLUSTER_TEST_KEYS = {
    "NIMBUS_ACCESS_KEY_ID": "AKIACLUSTERTEST00001",
    "NIMBUS_SECRET_ACCESS_KEY": "cluster-test-secret-not-for-use",
}
# A test that reads the credentials.json a sigv4 server generates: in cluster mode the
# server is given CLUSTER_TEST_KEYS instead and generates none.
generates_credentials = pytest.mark.skipif(
    CLUSTER, reason="checks the credentials.json a sigv4 server generates in its data dir; "
    "in cluster mode the nodes are configured with one pair and generate none")


def store_url(server: NimbusProcess) -> str:
    """The database URL of ``server``'s store: its PostgreSQL schema in cluster mode (or
    wherever NIMBUS_DATABASE_URL points), else the SQLite file in its data dir."""
    return server.env.get("NIMBUS_DATABASE_URL") or f"sqlite:///{server.data_dir / 'nimbus.db'}"


def admin_keys(server: NimbusProcess) -> tuple[str, str]:
    """The admin access key and secret of a sigv4 ``server``: those configured in its
    environment, else those it generated into its data dir."""
    if "NIMBUS_ACCESS_KEY_ID" in server.env:
        return server.env["NIMBUS_ACCESS_KEY_ID"], server.env["NIMBUS_SECRET_ACCESS_KEY"]
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    return stored["AccessKeyId"], stored["SecretAccessKey"]


@contextmanager
def live_server(
    data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Iterator[NimbusProcess]:
    """A real ``nimbus up`` on ``data_dir``, with ``env`` added to its environment (NIMBUS_*
    settings) and ``args`` to its command line, stopped on leaving: the one way tests start
    a live server, whether for a test, a module (see tests/api/conftest.py) or a few lines."""
    if CLUSTER and "NIMBUS_DATABASE_URL" not in (env or {}):
        with _cluster_server(data_dir, env or {}, args) as server:
            yield server
        return
    server = NimbusProcess(data_dir, env=env, args=args).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def _cluster_server(
    data_dir: Path, env: dict[str, str], args: list[str] | None
) -> Iterator[NimbusProcess]:
    """``NIMBUS_TEST_CLUSTER=1`` (``make test-cluster``): the server a test asked for is
    a ``nimbus up --cluster`` on a PostgreSQL schema and a JetStream stream of its own,
    with one worker node running its invocations, so a suite written for one server
    checks cluster mode."""
    from nimbus.sigv4.credentials import Credentials
    from nimbus.sigv4.signing import httpx_auth

    env = dict(env)
    if env.get("NIMBUS_API_AUTH") == "sigv4" and "NIMBUS_ACCESS_KEY_ID" not in env:
        # A cluster's nodes sign what they forward with the installation's configured
        # pair, so cluster mode refuses sigv4 without one: every node gets this test pair
        # (see admin_keys), and no credentials.json is generated.
        env.update(CLUSTER_TEST_KEYS)
    root = data_dir.parent / f"{data_dir.name}-cluster"
    if data_dir not in _INSTALLATIONS:
        # Kept for the session: a test that stops its server and starts another on the
        # same data dir finds what it left, as it would on the embedded store.
        _INSTALLATIONS[data_dir] = _ENDED.enter_context(_kept_installation(root))
    shared = {**_INSTALLATIONS[data_dir], **env, "NIMBUS_CLUSTER": "1"}
    server = NimbusProcess(data_dir, env=shared, args=args)
    # `nimbus worker` takes no --isolation: the node runs the functions, so it gets the
    # server's as the setting.
    given = args or []
    isolation = given[given.index("--isolation") + 1] if "--isolation" in given else None
    worker = NimbusProcess(root / "worker", env={
        **shared, **({"NIMBUS_ISOLATION": isolation} if isolation else {})})
    worker.command = "worker"
    _NODES[data_dir] = worker
    try:
        server.start()
        worker.start()
        auth = httpx_auth(Credentials(*admin_keys(server)), region="us-east-1") if (
            env.get("NIMBUS_API_AUTH") == "sigv4") else None
        deadline = time.monotonic() + 30
        while not httpx.get(f"{server.endpoint}/_nimbus/cluster", auth=auth).json()["Nodes"]:
            assert time.monotonic() < deadline, "the worker node never announced itself"
            time.sleep(0.1)  # polling an HTTP listing: there is no event to await here
        yield server
    finally:
        worker.stop()
        server.stop()


# Cluster mode: each data dir's installation (its schema, stream and env key), and what
# drops them all when the session ends.
_INSTALLATIONS: dict[Path, dict[str, str]] = {}
_ENDED = ExitStack()
_NODES: dict[Path, NimbusProcess] = {}  # the worker node of each data dir's server


def pytest_sessionfinish(session: pytest.Session) -> None:
    _ENDED.close()


@contextmanager
def _kept_installation(root: Path) -> Iterator[dict[str, str]]:
    """The settings of a fresh installation, as tests/cluster/servers.py's
    ``shared_installation`` makes them, but holding no database connection while it is
    kept: a session keeps one per server a test started, more than PostgreSQL's clients."""
    import asyncio
    import base64

    from tests.cluster.servers import NATS_URL, _delete_stream  # imports this module
    from tests.sink import LOCAL_WEBHOOKS

    admin = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    schema = f"nimbus_cluster_{uuid.uuid4().hex[:12]}"
    stream = f"NIMBUS_CLUSTER_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    root.mkdir(parents=True, exist_ok=True)
    key = root / "env.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key.chmod(0o600)
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield {
            "NIMBUS_DATABASE_URL": f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}",
            "NIMBUS_QUEUE_URL": f"{NATS_URL}/{stream}",
            "NIMBUS_ENV_KEY_FILE": str(key),
            **LOCAL_WEBHOOKS,
        }
    finally:
        with contextlib.suppress(OSError):
            asyncio.run(_delete_stream(stream))
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def output_of(server: NimbusProcess) -> str:
    """What ``server`` printed, and in cluster mode what its worker node (which runs its
    functions) printed after it."""
    node = _NODES.get(server.data_dir)
    return "".join(server.output) + ("".join(node.output) if node is not None else "")


@pytest.fixture
def nimbus(tmp_path: Path) -> Iterator[NimbusProcess]:
    """A live server of the test's own, with the default settings."""
    with live_server(tmp_path / "data") as server:
        yield server


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A webhook receiver in the test process."""
    s = Sink()
    yield s
    s.close()


def awslambdaric_package(tmp_path: Path) -> bytes:
    """A provided.al2023 function whose bootstrap runs the real awslambdaric client,
    vendored from this venv (as a user would vendor it with pip install --target). Its
    C extension needs the interpreter it was built for: this venv's base Python, which
    the sandbox shows because it is a runtime's prefix."""
    import awslambdaric
    import simplejson
    import snapshot_restore_py

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for module in (awslambdaric, simplejson):
            root = Path(module.__file__).parent
            for path in root.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    zf.write(path, f"{root.name}/{path.relative_to(root)}")
        zf.write(snapshot_restore_py.__file__, "snapshot_restore_py.py")
        site = Path(simplejson.__file__).parent.parent
        for extension in site.glob("runtime_client*.so"):  # awslambdaric's C client
            zf.write(extension, extension.name)
        boot = zipfile.ZipInfo("bootstrap")
        boot.external_attr = (0o755 | 0o100000) << 16
        zf.writestr(
            boot,
            '#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\n'
            'export PYTHONPATH="$LAMBDA_TASK_ROOT"\n'
            f'exec {os.path.realpath(sys.executable)} -m awslambdaric "$_HANDLER"\n',
        )
        zf.writestr(
            "fn.py",
            "def handler(event, context):\n"
            "    if event.get('fail'):\n"
            "        raise KeyError('missing')\n"
            "    return {'echo': event, 'runtime': 'awslambdaric'}\n",
        )
    return buf.getvalue()


def python_runtime() -> str:
    """python3.11 (this venv's Python) when the host offers it, else the newest python3.x
    runtime there is: for functions whose vendored packages are pure Python."""
    from nimbus.sandbox import catalog

    names = [n for n in catalog.names() if n.startswith("python3.")]
    return "python3.11" if "python3.11" in names else names[-1]


def powertools_package(files: dict[str, str]) -> bytes:
    """A python function zip with aws-lambda-powertools vendored from this venv (as a user
    would vendor it with pip install --target): the package dirs of aws_lambda_powertools
    and jmespath and the single-module typing_extensions, pure Python, so any python3.9+
    runtime imports them; ``files`` (name -> source) are the function's own modules."""
    import aws_lambda_powertools
    import jmespath
    import typing_extensions

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for module in (aws_lambda_powertools, jmespath):
            root = Path(module.__file__).parent
            for path in root.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    zf.write(path, f"{root.name}/{path.relative_to(root)}")
        zf.write(typing_extensions.__file__, "typing_extensions.py")
        for name, source in files.items():
            zf.writestr(name, source)
    return buf.getvalue()


def aws_cli(
    endpoint: str, service: str, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the AWS CLI (from this venv) against nimbus, as a user would; asserts that it
    succeeded (or, with ``ok=False``, that it failed)."""
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
    }
    out = subprocess.run(
        [aws, "--endpoint-url", endpoint, service, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (out.returncode == 0) == ok, out.stderr
    return out


def aws_json(endpoint: str, service: str, *args: str) -> dict:
    """The AWS CLI's JSON output for a command that must succeed ({} when it prints none)."""
    out = aws_cli(endpoint, service, *args).stdout
    return json.loads(out) if out.strip() else {}
