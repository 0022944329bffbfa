"""How a test configures nimbus on a database nodes can share (PostgreSQL): the database
URL and the environment-variable key every node must share (``env_key_file``: nimbus
refuses to start on such a database without one, store/env_cipher.py)."""

from __future__ import annotations

import base64
import os
from pathlib import Path


def shared_database_env(database_url: str, key_dir: Path) -> dict[str, str]:
    """NIMBUS_* settings for a server on ``database_url``, with a key file in ``key_dir``
    (made once: servers given the same ``key_dir`` share the key, as cluster nodes do)."""
    key = key_dir / "env.key"
    if not key.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        key.write_text(base64.b64encode(os.urandom(32)).decode())
        key.chmod(0o600)
    return {"NIMBUS_DATABASE_URL": database_url, "NIMBUS_ENV_KEY_FILE": str(key)}
