"""Environment variables encrypted at rest: nimbus's analogue of Lambda's KMSKeyArn.

A function version's ``Environment.Variables`` are stored sealed with AES-256-GCM (the
``cryptography`` package) under the installation's key: the database column holds
``{"nimbus:sealed": "v1:<key id>:<base64 nonce + ciphertext>"}``, bound to the function
and version it belongs to (a sealed value copied to another row does not open). Readers
get plaintext back through ``FunctionStore``, so GetFunctionConfiguration and the
sandbox see the variables as set; a copy of the database (a backup, a PostgreSQL
replica) does not show them.

The key is 32 random bytes, base64-encoded, in ``config.env_key_file``
(``NIMBUS_ENV_KEY_FILE``; every node and worker sharing a database needs the same one),
else ``<data_dir>/env.key``, generated (mode 0600) by the first server that starts. With
a database nodes can share (PostgreSQL) the key must be configured: a key generated per
node would seal variables the other nodes cannot open, so nimbus refuses to start.
Rows written before encryption existed are sealed when the server starts
(``FunctionStore.seal_environments``). A value sealed under another key cannot be read:
reading it raises Lambda's ``KMSAccessDeniedException`` naming the key id to restore.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nimbus.config import Config, ConfigError
from nimbus.errors import KMSAccessDenied

SEALED = "nimbus:sealed"  # ':' never appears in a variable name, so no clash
FILE_NAME = "env.key"
_VERSION = "v1"


class EnvCipher:
    """Seals and opens the environment variables of function versions."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the environment key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self._key = key
        self.key_id = hashlib.sha256(key).hexdigest()[:16]

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (an HMAC of the name): every node sharing this
        key derives the same one, and it reveals nothing of this key or of another."""
        return hmac.new(self._key, f"nimbus {purpose}".encode(), hashlib.sha256).digest()

    @classmethod
    def load(cls, config: Config) -> EnvCipher:
        """The configured key, else the data dir's (created by the first caller)."""
        if config.env_key_file is not None:
            return cls(_read(config.env_key_file, configured=True))
        path = config.data_dir / FILE_NAME
        if shared_database(config):
            raise ConfigError(_NO_SHARED_KEY.format(path=path))
        if not path.exists():
            _create(path)
        return cls(_read(path, configured=False))

    def seal(self, variables: dict[str, str], function: str, version: str) -> dict[str, str]:
        """What the column stores for ``variables`` ({} stays {}: nothing to hide)."""
        if not variables:
            return {}
        nonce = os.urandom(12)
        plain = json.dumps(variables, separators=(",", ":")).encode()
        sealed = self._aead.encrypt(nonce, plain, _bound(function, version))
        token = base64.b64encode(nonce + sealed).decode()
        return {SEALED: f"{_VERSION}:{self.key_id}:{token}"}

    def open(self, stored: dict[str, str], function: str, version: str) -> dict[str, str]:
        """The variables a column value holds (plaintext from before sealing: as is)."""
        if not is_sealed(stored):
            return stored
        _, key_id, token = stored[SEALED].split(":", 2)
        try:
            raw = base64.b64decode(token)
            plain = self._aead.decrypt(raw[:12], raw[12:], _bound(function, version))
        except (InvalidTag, ValueError, binascii.Error):
            raise KMSAccessDenied(
                "Lambda was unable to decrypt the environment variables because KMS access "
                f"was denied: they were sealed with key {key_id} and this nimbus has key "
                f"{self.key_id}. Set env_key_file (NIMBUS_ENV_KEY_FILE) to the key they were "
                "written with."
            ) from None
        found: dict[str, str] = json.loads(plain)
        return found


_NO_SHARED_KEY = (
    "database_url names a database other nodes and workers can share (PostgreSQL), and "
    "each would seal environment variables with a key of its own that the others cannot "
    "open: set env_key_file (NIMBUS_ENV_KEY_FILE) to a file holding 32 random bytes, "
    "base64-encoded, the same on every node (python3 -c 'import base64,os; "
    "print(base64.b64encode(os.urandom(32)).decode())' > env.key; chmod 600 env.key). "
    "If {path} exists from an earlier start, use that file: it holds the key the "
    "variables already stored were sealed with."
)


def shared_database(config: Config) -> bool:
    """Whether the state database is one several nodes may share (not SQLite)."""
    return not config.effective_database_url.startswith("sqlite")


def is_sealed(stored: object) -> bool:
    return (
        isinstance(stored, dict)
        and len(stored) == 1
        and isinstance(stored.get(SEALED), str)
        and stored[SEALED].startswith(_VERSION + ":")
        and stored[SEALED].count(":") >= 2
    )


def _bound(function: str, version: str) -> bytes:
    return f"nimbus-env/{function}/{version}".encode()


def _read(path: Path, *, configured: bool) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        what = "env_key_file" if configured else "the environment key file"
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"the environment key file {path} must hold 32 random bytes, base64-encoded "
            "(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')"
        )
    return key


def _create(path: Path) -> None:
    """Write a new key unless another process got there first (hard link: atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
