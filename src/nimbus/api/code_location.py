"""Code.Location: a time-limited, HMAC-signed download URL for a function's zip, the
way Lambda hands out a presigned S3 URL. It works without AWS credentials, so
``curl "$LOCATION"`` or ``urllib`` can fetch it as on Lambda."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from nimbus.errors import AccessDenied

VALID_SECONDS = 600  # Lambda's presigned links last 10 minutes

# Download links carry their own signature (like S3's presigned URLs), so the API's
# SigV4 check lets them through: any HTTP client can follow Code.Location.
CODE_PATH = "/_nimbus/code/"

class CodeSigner:
    """Signs and verifies download links with a key kept in the data dir, or (``key``,
    the servers of one installation sharing a database) derived from the shared one, so
    a link one server made is good on every other."""

    def __init__(self, key_file: Path, key: bytes | None = None) -> None:
        if key is not None:
            self._key = key
            return
        if not key_file.exists():
            tmp = key_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
            os.replace(tmp, key_file)
        self._key = key_file.read_bytes()

    def _mac(self, sha: str, expires: int) -> str:
        return hmac.new(self._key, f"{sha}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base_url: str, sha: str) -> str:
        expires = int(time.time()) + VALID_SECONDS
        base = base_url.rstrip("/")
        signature = self._mac(sha, expires)
        return f"{base}{CODE_PATH}{sha}.zip?Expires={expires}&Signature={signature}"

    def verify(self, sha: str, expires: str | None, signature: str | None) -> None:
        if not expires or not signature or not expires.isdigit():
            raise AccessDenied("The code download link is missing its Expires or Signature.")
        if int(expires) < time.time():
            raise AccessDenied(
                "The code download link has expired; call GetFunction for a fresh Code.Location."
            )
        if not hmac.compare_digest(self._mac(sha, int(expires)), signature):
            raise AccessDenied("The code download link's signature does not match.")
