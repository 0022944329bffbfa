"""A private PostgreSQL cluster for the change stream tests: initdb in a temporary
directory, started with the wal_level asked for on a free port, stopped and removed when
the test session ends. The machine's own PostgreSQL is never touched (its wal_level is
what its owner set).

One cluster per wal_level per test session, shared by the test modules that ask for it.
Where the PostgreSQL binaries are missing the tests skip, saying so (and fail in CI).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import unavailable
from tests.nimbus_process import free_port

BIN_DIRS = [
    os.environ.get("NIMBUS_TEST_PG_BIN", ""),
    "/usr/lib/postgresql/15/bin",
    *sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
]


@dataclass
class Cluster:
    directory: Path
    port: int
    bindir: Path
    run_as: list[str]

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(
            [
                *self.run_as,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


_clusters: dict[str, Cluster] = {}


def _bindir() -> Path | None:
    for candidate in BIN_DIRS:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def cluster(wal_level: str = "logical") -> Cluster:
    """The session's cluster with ``wal_level``, started on first use."""
    if wal_level in _clusters:
        return _clusters[wal_level]
    bindir = _bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")
        raise AssertionError("unreachable")
    run_as: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix=f"nimbus-pg-{wal_level}-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no postgres user to run PostgreSQL as")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = " ".join(
        [
            f"-c wal_level={wal_level}",
            f"-c port={port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={directory}",
            "-c fsync=off",
            "-c max_replication_slots=50",
            "-c max_wal_senders=10",
            "-c shared_buffers=16MB",
            "-c timezone=UTC",
        ]
    )
    started = subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(directory / "log"),
            "-w",
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = Cluster(directory, port, bindir, run_as)
    if started.returncode != 0:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        found.stop()
        raise RuntimeError(f"private PostgreSQL did not start: {started.stderr}\n{log}")
    _clusters[wal_level] = found
    atexit.register(found.stop)
    return found
