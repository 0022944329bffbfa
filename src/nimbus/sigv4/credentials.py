"""The key pair nimbus accepts for AWS Signature Version 4.

The admin identity is the account's root, with one access key. It comes from the
configuration (``access_key_id`` / ``secret_access_key``, i.e. ``NIMBUS_ACCESS_KEY_ID`` /
``NIMBUS_SECRET_ACCESS_KEY``) or, when those are unset, from ``<data_dir>/credentials.json``,
generated on first use (mode 0600) and reused by every later server and CLI run on that
data dir. ``nimbus credentials`` prints the pair as ``export AWS_...`` lines. Further principals
(IAM users with their own keys and policies) come from a principals file
(``nimbus.iam.principals``); a ``Keyring`` holds every pair a server accepts.

The client side (the nimbus CLI) finds keys with ``client_credentials``: the nimbus
configuration, else the data dir's file if it exists, else the standard ``AWS_*``
environment variables.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.config import Config, ConfigError

FILE_NAME = "credentials.json"
_KEY_ALPHABET = string.ascii_uppercase + "234567"  # what AWS access key ids are made of
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


@dataclass(frozen=True)
class Credentials:
    """An access key and its secret, and who signs with them."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    account_id: str = "000000000000"
    # None: the account's root (the admin pair); else an IAM user of the principals file
    # (nimbus.iam.principals).
    user_name: str | None = None

    @property
    def user_arn(self) -> str:
        if self.user_name is not None:
            return f"arn:aws:iam::{self.account_id}:user/{self.user_name}"
        return f"arn:aws:iam::{self.account_id}:root"

    @property
    def user_id(self) -> str:
        if self.user_name is not None:
            # IAM user ids start AIDA; a stable one derived from the name.
            digest = hashlib.sha256(f"{self.account_id}:{self.user_name}".encode()).digest()
            return "AIDA" + base64.b32encode(digest).decode()[:17]
        # The root user's id is the account id (what STS GetCallerIdentity reports).
        return self.account_id


class Keyring:
    """Every key pair a server accepts, by access key id: the admin's and the
    principals file's. ``authenticate`` looks the signer's key up here."""

    def __init__(self, pairs: Iterable[Credentials]) -> None:
        self._by_key: dict[str, Credentials] = {}
        for pair in pairs:
            if pair.access_key_id in self._by_key:
                raise ConfigError(
                    f"access key {pair.access_key_id} is given twice (the admin pair and the "
                    "principals file must not share keys)"
                )
            self._by_key[pair.access_key_id] = pair

    def find(self, access_key_id: str) -> Credentials | None:
        return self._by_key.get(access_key_id)

    def __iter__(self) -> Iterator[Credentials]:
        return iter(self._by_key.values())


def load_credentials(config: Config) -> Credentials:
    """The pair the server accepts: configured, else the data dir's (created if absent)."""
    if config.access_key_id is not None and config.secret_access_key is not None:
        return Credentials(
            config.access_key_id, config.secret_access_key.get_secret_value(), config.account_id
        )
    path = config.data_dir / FILE_NAME
    found = _read(path)
    if found is None:
        found = _create(path)
    return Credentials(found[0], found[1], config.account_id)


def client_credentials(config: Config) -> Credentials | None:
    """The pair a client should sign with, or None: never creates a file."""
    if config.access_key_id is not None and config.secret_access_key is not None:
        return Credentials(
            config.access_key_id, config.secret_access_key.get_secret_value(), config.account_id
        )
    found = _read(config.data_dir / FILE_NAME)
    if found is not None:
        return Credentials(found[0], found[1], config.account_id)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, config.account_id)
    return None


def generate() -> tuple[str, str]:
    """A fresh pair shaped like AWS's: ``AKIA`` + 16 characters, and a 40-character secret."""
    key = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return key, secret


def _read(path: Path) -> tuple[str, str] | None:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the credentials file {path}: {exc}") from exc
    try:
        data = json.loads(raw)
        key, secret = data["AccessKeyId"], data["SecretAccessKey"]
        if not (isinstance(key, str) and isinstance(secret, str) and key and secret):
            raise ValueError("AccessKeyId and SecretAccessKey must be non-empty strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the credentials file {path} is damaged ({exc!r}); delete it to generate a new "
            "pair, or set NIMBUS_ACCESS_KEY_ID and NIMBUS_SECRET_ACCESS_KEY"
        ) from exc
    return key, secret


def _create(path: Path) -> tuple[str, str]:
    """Write a new pair unless another process got there first; return the winner's.

    The file is written whole under a private name and hard-linked into place: a link
    fails if the name exists, so two processes starting at once agree on one pair and
    nobody ever reads a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    key, secret = generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"AccessKeyId": key, "SecretAccessKey": secret}, fh)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    found = _read(path)
    if found is None:
        raise ConfigError(f"cannot create the credentials file {path}")
    return found
