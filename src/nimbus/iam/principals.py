"""Who may sign requests: the admin pair and the principals file's IAM users.

The admin is the account's root (``nimbus credentials``, ``sigv4/credentials.py``): it
may do everything, as root does on AWS. Every other principal is an IAM user listed in
the principals file, ``config.principals_file`` (``NIMBUS_PRINCIPALS_FILE``), else
``<data_dir>/principals.json`` when it exists::

    {"Principals": [
        {"UserName": "ci",
         "AccessKeyId": "AKIAEXAMPLECI0000001",
         "SecretAccessKey": "...",
         "Policy": {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow",
                                   "Action": ["lambda:GetFunction", "lambda:InvokeFunction"],
                                   "Resource": "arn:aws:lambda:*:*:function:app-*"}]}}]}

``Policy`` is one identity policy document (``policy.py``), or ``Policies`` a list of
them. The file is read when the server starts (restart it after editing); a file that
does not parse stops the server with a message naming the entry and what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.config import Config, ConfigError
from nimbus.iam.policy import Policy, PolicyError
from nimbus.sigv4.credentials import Credentials, Keyring, load_credentials

FILE_NAME = "principals.json"
_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{16,128}")


@dataclass(frozen=True)
class Principal:
    """One identity: its key pair and identity policies (``admin``: may do anything)."""

    credentials: Credentials
    policies: tuple[Policy, ...] = field(default=())
    admin: bool = False

    @property
    def arn(self) -> str:
        return self.credentials.user_arn

    def identity_decision(
        self, action: str, resource: str, context: Mapping[str, str] | None = None
    ) -> str | None:
        """ "Deny", "Allow" or None (no identity policy says) for the request."""
        if self.admin:
            return "Allow"
        found = None
        for policy in self.policies:
            effect = policy.evaluate(action, resource, context)
            if effect == "Deny":
                return "Deny"
            found = effect or found
        return found


class Principals:
    """Every principal of this nimbus, by access key; ``keyring`` for SigV4."""

    def __init__(self, principals: list[Principal]) -> None:
        self.keyring = Keyring(p.credentials for p in principals)
        self._by_key = {p.credentials.access_key_id: p for p in principals}

    def find(self, access_key_id: str) -> Principal | None:
        return self._by_key.get(access_key_id)

    @property
    def multiple(self) -> bool:
        """Whether any principal besides the admin exists (policies need evaluating)."""
        return len(self._by_key) > 1

    @classmethod
    def load(cls, config: Config) -> Principals:
        """The admin pair (created if absent) and the principals file's users (blocking)."""
        admin = Principal(load_credentials(config), admin=True)
        path = principals_path(config)
        users = [] if path is None else read_principals(path, config.account_id)
        return cls([admin, *users])


def principals_path(config: Config) -> Path | None:
    """The principals file to read: configured (must exist), else the data dir's if any."""
    if config.principals_file is not None:
        if not config.principals_file.is_file():
            raise ConfigError(
                f"principals_file {config.principals_file} does not exist: create it (see "
                "the README's 'Access control') or unset NIMBUS_PRINCIPALS_FILE"
            )
        return config.principals_file
    default = config.data_dir / FILE_NAME
    return default if default.is_file() else None


def read_principals(path: Path, account_id: str) -> list[Principal]:
    """The IAM users a principals file lists; ConfigError says what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the principals file {path}: {exc}") from exc
    entries = data.get("Principals") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'the principals file {path} must be {{"Principals": [...]}}')
    found: list[Principal] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{path}: Principals[{index}]"
        try:
            principal = _principal(entry, account_id)
        except (PolicyError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        name = principal.credentials.user_name or ""
        if name in names:
            raise ConfigError(f"{where}: UserName {name!r} is given twice")
        names.add(name)
        found.append(principal)
    return found


def _principal(entry: Any, account_id: str) -> Principal:
    if not isinstance(entry, dict):
        raise ValueError("each principal is an object with UserName, AccessKeyId, ...")
    unknown = set(entry) - {"UserName", "AccessKeyId", "SecretAccessKey", "Policy", "Policies"}
    if unknown:
        raise ValueError(f"unknown member(s) {', '.join(sorted(unknown))}")
    name, key, secret = (
        entry.get("UserName"),
        entry.get("AccessKeyId"),
        entry.get("SecretAccessKey"),
    )
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        raise ValueError("UserName must be 1-64 letters, digits or +=,.@_-")
    if not isinstance(key, str) or not _ACCESS_KEY.fullmatch(key):
        raise ValueError("AccessKeyId must be 16-128 letters and digits")
    if not isinstance(secret, str) or len(secret) < 16:
        raise ValueError("SecretAccessKey must be a string of at least 16 characters")
    if "Policy" in entry and "Policies" in entry:
        raise ValueError("give Policy (one document) or Policies (a list), not both")
    documents = entry.get("Policies", [entry["Policy"]] if "Policy" in entry else [])
    if not isinstance(documents, list):
        raise ValueError("Policies must be a list of policy documents")
    policies = tuple(Policy.parse(d) for d in documents)
    return Principal(Credentials(key, secret, account_id, user_name=name), policies)
