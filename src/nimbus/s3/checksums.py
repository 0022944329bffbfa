"""The additional checksums S3 clients send (``x-amz-checksum-<algorithm>``, in a header
or an aws-chunked trailer): computed over the payload as it streams, compared with what
the client declared, stored with the object and returned with ``ChecksumMode=ENABLED``.

CRC32, SHA1 and SHA256 are computed with the standard library; CRC32C and CRC64NVME
would need a native package (AWS's CRT), so a request declaring them is refused rather
than stored unchecked.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Protocol

from nimbus.s3.errors import invalid_request

SUPPORTED = ("CRC32", "SHA1", "SHA256")
KNOWN = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
HEADER_PREFIX = "x-amz-checksum-"


class Checksum(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None: ...

    def value(self) -> str:
        """The base64 of the digest, as S3 writes it."""
        ...


class _Crc32:
    algorithm = "CRC32"

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def value(self) -> str:
        return base64.b64encode(self._crc.to_bytes(4, "big")).decode()


class _Hashed:
    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm.lower())

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def value(self) -> str:
        return base64.b64encode(self._hash.digest()).decode()


def header_name(algorithm: str) -> str:
    return HEADER_PREFIX + algorithm.lower()


def check_algorithm(algorithm: str) -> str:
    """The algorithm's upper-case name; raise for one nimbus cannot compute."""
    name = algorithm.upper()
    if name not in KNOWN:
        raise invalid_request(f"Checksum algorithm '{algorithm}' is not one of {', '.join(KNOWN)}.")
    if name not in SUPPORTED:
        raise invalid_request(
            f"nimbus does not compute {name} checksums; use one of {', '.join(SUPPORTED)} "
            "(or none)."
        )
    return name


def new_checksum(algorithm: str) -> Checksum:
    name = check_algorithm(algorithm)
    return _Crc32() if name == "CRC32" else _Hashed(name)


def of_bytes(algorithm: str, data: bytes) -> str:
    checksum = new_checksum(algorithm)
    checksum.update(data)
    return checksum.value()
