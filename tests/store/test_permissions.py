"""Private data files: the data dir is 0700, the metadata and queue databases (with their
WAL and shared-memory files) and the stored zips 0600, whatever the umask, and a server
narrows what an older nimbus left readable when it starts. Checked with ``os.stat`` and
by another local user (``nobody``) trying to read them."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.private_files import secure_data_dir
from nimbus.queue.backend import QueuedEvent
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from nimbus.store.database import Database
from tests.conftest import ROLE, live_server, make_zip

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask most systems run with: files 0644 and dirs 0755 unless told otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every local user may enter (pytest's own tmp_path is 0700), where a
    data dir's own modes are all that keeps others out."""
    path = Path(tempfile.mkdtemp(prefix="nimbus-perm-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def readable_by_nobody(path: Path) -> bool:
    """Whether another local user (uid 65534) can read ``path``."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    probe = subprocess.run(
        ["/bin/cat", str(path)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return probe.returncode == 0


def private_files_of(data_dir: Path) -> list[Path]:
    """What must be 0600: the databases and their sidecars, and every stored zip."""
    names = [
        data_dir / f"{db}{suffix}"
        for db in ("nimbus.db", "queue.db")
        for suffix in ("", "-wal", "-shm")
    ]
    return [p for p in names if p.exists()] + sorted((data_dir / "code" / "blobs").rglob("*.zip"))


def test_a_server_keeps_its_data_private_and_narrows_what_was_left_readable(
    public_dir: Path, loose_umask: None
) -> None:
    data = public_dir / "data"
    env = {"NIMBUS_ASYNC_WORKERS": "0"}
    with live_server(data, env) as server:
        lam = server.client()
        lam.create_function(
            FunctionName="secretive", Runtime="python3.12", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})},
            Environment={"Variables": {"API_TOKEN": "s3cr3t"}},
        )  # fmt: skip
        files = private_files_of(data)
        assert {p.name for p in files} >= {
            "nimbus.db",
            "nimbus.db-wal",
            "nimbus.db-shm",
            "queue.db",
            "queue.db-wal",
            "queue.db-shm",
        }
        assert any(p.suffix == ".zip" for p in files)
        assert mode(data) == 0o700
        assert mode(data / "code") == 0o700 and mode(data / "code" / "blobs") == 0o700
        assert {p: mode(p) for p in files} == {p: 0o600 for p in files}
        assert not readable_by_nobody(data / "nimbus.db")

    # What an older nimbus left: a world-readable tree. The next start narrows it.
    for path in [data, data / "code", *(data / "code" / "blobs").iterdir()]:
        os.chmod(path, 0o755)
    for path in private_files_of(data):
        os.chmod(path, 0o644)
    assert readable_by_nobody(data / "nimbus.db")
    with live_server(data, env):
        assert mode(data) == 0o700 and mode(data / "code") == 0o700
        files = private_files_of(data)
        assert {p: mode(p) for p in files} == {p: 0o600 for p in files}
        assert all(mode(p.parent) == 0o700 for p in files if p.suffix == ".zip")
        assert not readable_by_nobody(data / "nimbus.db")


def test_the_metadata_database_is_created_0600(tmp_path: Path, loose_umask: None) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nimbus.db'}")
    db.migrate()  # writes, so SQLite makes its -wal and -shm files
    try:
        made = [tmp_path / n for n in ("nimbus.db", "nimbus.db-wal", "nimbus.db-shm")]
        assert all(p.exists() for p in made)
        assert {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}
    finally:
        db.dispose()


async def test_the_queue_is_created_0600(tmp_path: Path, loose_umask: None) -> None:
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    try:
        await queue.put(QueuedEvent("fn", None, b'{"card": "4111"}', "req-1"))
        made = [tmp_path / n for n in ("queue.db", "queue.db-wal", "queue.db-shm")]
        assert all(p.exists() for p in made)
        assert {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}
    finally:
        await queue.close()


def test_stored_zips_are_0600_in_0700_folders(tmp_path: Path, loose_umask: None) -> None:
    store = CodeStore(tmp_path / "code", PackageLimits(max_unzipped=10**7, max_entries=100))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return 1\n")
    stored = store.put(buf.getvalue())
    blob = store.blob_path(stored.sha256_hex)
    assert mode(blob) == 0o600 and mode(blob.parent) == 0o700
    assert mode(tmp_path / "code") == 0o700
    # The tree stays readable: sandboxed users read it through a bind mount made as root.
    assert mode(store.tree_path(stored.sha256_hex)) == 0o755


def test_a_directory_that_is_not_nimbus_s_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "someone-elses.txt").write_text("hello")
    os.chmod(shared, 0o755)
    secure_data_dir(shared)
    assert mode(shared) == 0o755  # pointed at a shared directory by mistake: left alone
    fresh, empty = tmp_path / "fresh" / "data", tmp_path / "empty"
    empty.mkdir(mode=0o755)
    os.chmod(empty, 0o755)
    secure_data_dir(fresh)
    secure_data_dir(empty)
    assert mode(fresh) == 0o700 and mode(empty) == 0o700


def test_a_symlink_in_the_data_dir_does_not_redirect_the_chmod(tmp_path: Path) -> None:
    data, victim = tmp_path / "data", tmp_path / "victim"
    data.mkdir()
    victim.write_text("not nimbus's")
    os.chmod(victim, 0o644)
    (data / "nimbus.db").symlink_to(victim)
    secure_data_dir(data)
    assert mode(victim) == 0o644
