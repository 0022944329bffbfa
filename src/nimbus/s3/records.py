"""The records the S3 store hands out: buckets, objects, multipart uploads and parts,
listing pages, and the events a change of an object raises."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BucketInfo:
    name: str
    region: str
    created_ms: int


@dataclass(frozen=True)
class ObjectInfo:
    """An object's metadata; its bytes are the file of ``blob`` (``BlobStore.path``)."""

    bucket: str
    key: str
    blob: str
    size: int
    etag: str  # without quotes: an MD5 in hex, or "<hex>-<parts>" for a multipart object
    last_modified_ms: int
    headers: dict[str, str] = field(default_factory=dict)  # Content-Type, Cache-Control...
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* (lower-case)
    checksum: dict[str, str] | None = None  # {"algorithm": "CRC32", "value": base64}
    parts: list[int] | None = None  # part sizes of a multipart object

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "binary/octet-stream")

    @property
    def parts_count(self) -> int | None:
        return len(self.parts) if self.parts is not None else None


@dataclass(frozen=True)
class NewObject:
    """What a writer says about an object besides its bytes (PutObject's headers)."""

    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadInfo:
    upload_id: str
    bucket: str
    key: str
    created_ms: int
    headers: dict[str, str]
    metadata: dict[str, str]
    checksum_algorithm: str | None


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    blob: str
    size: int
    etag: str
    last_modified_ms: int
    checksum: dict[str, str] | None = None


@dataclass(frozen=True)
class ListPage:
    """One page of a listing: objects and common prefixes in key order, and where the
    next page starts (the last key or prefix returned) when ``truncated``."""

    contents: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    last: str | None  # the greatest key or common prefix in this page

    @property
    def count(self) -> int:
        return len(self.contents) + len(self.prefixes)


@dataclass(frozen=True)
class RequestInfo:
    """Who asked for a change, as a notification tells it."""

    request_id: str
    source_ip: str
    principal: str  # the caller's access key id ("anonymous": unsigned)


@dataclass(frozen=True)
class ObjectEvent:
    """A change of an object, as S3 event notifications name it: ``name`` is
    ``ObjectCreated:Put|Post|Copy|CompleteMultipartUpload`` or ``ObjectRemoved:Delete``.
    ``sequencer`` orders the events of one key (hex, compare as S3 says: after padding)."""

    name: str
    bucket: str
    key: str
    size: int | None  # None for a removal
    etag: str | None
    version_id: str | None
    sequencer: str
    time_ms: int
    request: RequestInfo | None = None  # None: not an API request (tests, tools)
