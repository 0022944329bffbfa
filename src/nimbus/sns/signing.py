"""Message signatures, as SNS signs every notification and confirmation it sends.

An endpoint checks a message by fetching the certificate at ``SigningCertURL`` and
verifying ``Signature`` (base64 RSA, SHA1 for SignatureVersion 1, SHA256 for 2) over the
string SNS documents: each signed field's name and value on lines of their own, in
alphabetical order. nimbus keeps its own RSA key and a self-signed certificate in the data
dir (made by the server when it first opens, written atomically, read by its workers)
and serves the certificate at ``/_nimbus/sns/<CERT_NAME>``. SDK validators that insist on
an ``amazonaws.com`` certificate host refuse it: verify against nimbus's URL instead.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

CERT_PATH = "/_nimbus/sns/"
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)  # fmt: skip


def string_to_sign(message: dict[str, Any]) -> str:
    """The text SNS signs for ``message`` (a notification or a (un)subscribe confirmation)."""
    confirmation = message.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation")
    fields = _CONFIRMATION_FIELDS if confirmation else _NOTIFICATION_FIELDS
    return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None)


class Signer:
    """This installation's signing key and certificate."""

    def __init__(self, key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
        self.key = key
        self.cert_pem = cert_pem
        digest = hashlib.sha256(cert_pem).hexdigest()[:32]
        self.cert_name = f"SimpleNotificationService-{digest}.pem"

    @classmethod
    def load_or_create(cls, directory: Path) -> Signer:
        """The key pair under ``directory`` (made there first if missing; blocking)."""
        key_file, cert_file = directory / "sns-signing.key", directory / "sns-signing.pem"
        if not key_file.exists() or not cert_file.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cert = _self_signed(key)
            _write_atomically(key_file, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ), 0o600)  # fmt: skip
            _write_atomically(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return cls(loaded, cert_file.read_bytes())

    def cert_url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}{CERT_PATH}{self.cert_name}"

    def sign(self, message: dict[str, Any], version: str) -> str:
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()  # v1: SNS's
        signature = self.key.sign(string_to_sign(message).encode(), padding.PKCS1v15(), algorithm)
        return base64.b64encode(signature).decode()


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nimbus"),
        x509.NameAttribute(NameOID.COMMON_NAME, "nimbus SNS message signing"),
    ])  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    # The server makes the pair while it opens, before any async worker starts and
    # reads it; a rename never leaves a half-written file to read.
    os.replace(tmp, path)
