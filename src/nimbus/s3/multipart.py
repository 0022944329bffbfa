"""Multipart uploads (blocking; the API calls them off the event loop): create, upload
parts (each its own blob), list, abort, and complete into one object.

Completing checks the parts as S3 does (ascending, known, ETags matching, all but the
last at least 5 MiB), joins their blobs into the object's blob (``BlobStore.concat``:
the kernel copies), and in one transaction makes it the object and drops the upload;
the part blobs go after the commit. The ETag is S3's: the MD5 of the parts' binary MD5s,
then ``-<number of parts>``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from nimbus.clock import Clock, now_ms
from nimbus.protocol.errors import AwsError
from nimbus.s3.blobs import BlobStore
from nimbus.s3.buckets import require_bucket
from nimbus.s3.checksums import new_checksum
from nimbus.s3.conditions import WriteConditions
from nimbus.s3.errors import entity_too_large, no_such_upload
from nimbus.s3.objects import ObjectStore
from nimbus.s3.records import NewObject, ObjectInfo, PartInfo, UploadInfo
from nimbus.s3.tables import s3_parts, s3_uploads
from nimbus.store.database import Database

U = s3_uploads.c
P = s3_parts.c
MIN_PART = 5 * 1024 * 1024
MAX_PART_NUMBER = 10_000
MAX_OBJECT = 5 * 1024**4  # 5 TiB


@dataclass(frozen=True)
class CompletedPart:
    """A part as CompleteMultipartUpload names it."""

    part_number: int
    etag: str
    checksum: str | None = None  # the client's checksum of the part, when it gave one


def _upload(row: Any) -> UploadInfo:
    return UploadInfo(
        upload_id=row.upload_id,
        bucket=row.bucket,
        key=row.key,
        created_ms=row.created_ms,
        headers=dict(row.headers or {}),
        metadata=dict(row.metadata or {}),
        checksum_algorithm=row.checksum_algorithm,
    )


def _part(row: Any) -> PartInfo:
    return PartInfo(
        part_number=row.part_number,
        blob=row.blob,
        size=row.size,
        etag=row.etag,
        last_modified_ms=row.last_modified_ms,
        checksum=row.checksum,
    )


def multipart_etag(etags: list[str]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for etag in etags:
        digest.update(bytes.fromhex(etag))
    return f"{digest.hexdigest()}-{len(etags)}"


class UploadStore:
    """Multipart uploads in progress (see the module docstring)."""

    def __init__(
        self, db: Database, blobs: BlobStore, objects: ObjectStore, clock: Clock = now_ms
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.objects = objects
        self.clock = clock

    def create(
        self, bucket: str, key: str, new: NewObject, checksum_algorithm: str | None
    ) -> UploadInfo:
        info = UploadInfo(
            upload_id=secrets.token_urlsafe(36),
            bucket=bucket,
            key=key,
            created_ms=self.clock(),
            headers=new.headers,
            metadata=new.metadata,
            checksum_algorithm=checksum_algorithm,
        )
        with self.db.write() as conn:
            require_bucket(conn, bucket)
            conn.execute(
                insert(s3_uploads).values(
                    upload_id=info.upload_id,
                    bucket=bucket,
                    key=key,
                    created_ms=info.created_ms,
                    headers=info.headers,
                    metadata=info.metadata,
                    checksum_algorithm=checksum_algorithm,
                )
            )
        return info

    def get(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        with self.db.read() as conn:
            return self._get_in(conn, bucket, key, upload_id)

    def _get_in(
        self, conn: Connection, bucket: str, key: str, upload_id: str, lock: bool = False
    ) -> UploadInfo:
        query = select(s3_uploads).where(U.upload_id == upload_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None or row.bucket != bucket or row.key != key:
            require_bucket(conn, bucket)
            raise no_such_upload(upload_id)
        return _upload(row)

    def put_part(
        self,
        upload: UploadInfo,
        part_number: int,
        blob: str,
        size: int,
        etag: str,
        checksum: dict[str, str] | None,
    ) -> PartInfo:
        """Store a part (its blob committed), replacing one of the same number."""
        part = PartInfo(part_number, blob, size, etag, self.clock(), checksum)
        try:
            with self.db.write() as conn:
                self._get_in(conn, upload.bucket, upload.key, upload.upload_id, lock=True)
                old = conn.execute(
                    select(P.blob).where(
                        P.upload_id == upload.upload_id, P.part_number == part_number
                    )
                ).scalar()
                values = {
                    "blob": blob,
                    "size": size,
                    "etag": etag,
                    "last_modified_ms": part.last_modified_ms,
                    "checksum": checksum,
                }
                if old is None:
                    conn.execute(
                        insert(s3_parts).values(
                            upload_id=upload.upload_id, part_number=part_number, **values
                        )
                    )
                else:
                    conn.execute(
                        update(s3_parts)
                        .where(P.upload_id == upload.upload_id, P.part_number == part_number)
                        .values(**values)
                    )
        except BaseException:
            self.blobs.remove(blob)
            raise
        if old is not None:
            self.blobs.remove(old)
        return part

    def parts(
        self, bucket: str, key: str, upload_id: str, after: int = 0, limit: int = 1000
    ) -> tuple[UploadInfo, list[PartInfo], bool]:
        """ListParts: the upload, up to ``limit`` parts numbered above ``after``, and
        whether more follow."""
        with self.db.read() as conn:
            upload = self._get_in(conn, bucket, key, upload_id)
            rows = conn.execute(
                select(s3_parts)
                .where(P.upload_id == upload_id, P.part_number > after)
                .order_by(P.part_number)
                .limit(limit + 1)
            ).all()
        return upload, [_part(r) for r in rows[:limit]], len(rows) > limit

    def uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> tuple[list[UploadInfo], bool]:
        """ListMultipartUploads: in key order, then by creation, after the markers."""
        query = select(s3_uploads).where(U.bucket == bucket)
        if prefix:
            query = query.where(U.key.startswith(prefix, autoescape=True))
        with self.db.read() as conn:
            require_bucket(conn, bucket)
            if key_marker:
                query = query.where(U.key >= key_marker)
            rows = list(conn.execute(query.order_by(U.key, U.created_ms, U.upload_id)))
        found = [_upload(r) for r in rows]
        if key_marker:
            if upload_id_marker:
                at = next(
                    (
                        i
                        for i, u in enumerate(found)
                        if u.key == key_marker and u.upload_id == upload_id_marker
                    ),
                    None,
                )
                found = (
                    found[at + 1 :] if at is not None else [u for u in found if u.key > key_marker]
                )
            else:
                found = [u for u in found if u.key > key_marker]
        return found[:limit], len(found) > limit

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        with self.db.write() as conn:
            self._get_in(conn, bucket, key, upload_id, lock=True)
            blobs = self._drop(conn, upload_id)
        for blob in blobs:
            self.blobs.remove(blob)

    def _drop(self, conn: Connection, upload_id: str) -> list[str]:
        blobs = list(conn.execute(select(P.blob).where(P.upload_id == upload_id)).scalars())
        conn.execute(delete(s3_parts).where(P.upload_id == upload_id))
        conn.execute(delete(s3_uploads).where(U.upload_id == upload_id))
        return blobs

    def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        named: list[CompletedPart],
        conditions: WriteConditions | None = None,
    ) -> ObjectInfo:
        """CompleteMultipartUpload (see the module docstring)."""
        if not named:
            raise AwsError(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our "
                "published schema: CompleteMultipartUpload needs at least one Part.",
            )
        with self.db.read() as conn:
            upload = self._get_in(conn, bucket, key, upload_id)
            stored = {
                row.part_number: _part(row)
                for row in conn.execute(select(s3_parts).where(P.upload_id == upload_id))
            }
        chosen = self._check(upload, named, stored)
        size = sum(p.size for p in chosen)
        if size > MAX_OBJECT:
            raise entity_too_large(size, MAX_OBJECT)
        blob = self.blobs.concat(p.blob for p in chosen)
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            blob=blob,
            size=size,
            etag=multipart_etag([p.etag for p in chosen]),
            last_modified_ms=0,
            headers=upload.headers,
            metadata=upload.metadata,
            checksum=_composite(upload.checksum_algorithm, chosen),
            parts=[p.size for p in chosen],
        )
        dropped: list[str] = []

        def finish(conn: Connection) -> None:
            # The upload must still be there with the same parts (not aborted, completed
            # or given a new part meanwhile), or the object is not what was asked.
            self._get_in(conn, bucket, key, upload_id, lock=True)
            now = {
                row.part_number: row.blob
                for row in conn.execute(
                    select(P.part_number, P.blob).where(P.upload_id == upload_id)
                )
            }
            if any(now.get(p.part_number) != p.blob for p in chosen):
                raise AwsError(
                    "InvalidPart",
                    "A part of this upload changed while it was being completed; "
                    "complete it again.",
                    UploadId=upload_id,
                )
            dropped.extend(self._drop(conn, upload_id))

        done = self.objects.put(
            info,
            event="ObjectCreated:CompleteMultipartUpload",
            conditions=conditions,
            staged=finish,
        )
        for part_blob in dropped:
            self.blobs.remove(part_blob)
        return done

    def _check(
        self, upload: UploadInfo, named: list[CompletedPart], stored: dict[int, PartInfo]
    ) -> list[PartInfo]:
        chosen: list[PartInfo] = []
        previous = 0
        for part in named:
            if part.part_number <= previous:
                raise AwsError(
                    "InvalidPartOrder",
                    "The list of parts was not in ascending order. Parts must be ordered by "
                    "part number.",
                    UploadId=upload.upload_id,
                )
            previous = part.part_number
            found = stored.get(part.part_number)
            etag = part.etag.strip().strip('"')
            if found is None or found.etag != etag or not _same_checksum(part, found):
                raise AwsError(
                    "InvalidPart",
                    "One or more of the specified parts could not be found.  The part may not "
                    "have been uploaded, or the specified entity tag may not match the part's "
                    "entity tag.",
                    UploadId=upload.upload_id,
                    ETag=etag,
                    PartNumber=str(part.part_number),
                )
            chosen.append(found)
        for small in chosen[:-1]:
            if small.size < MIN_PART:
                raise AwsError(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size",
                    ETag=small.etag,
                    MinSizeAllowed=str(MIN_PART),
                    PartNumber=str(small.part_number),
                    ProposedSize=str(small.size),
                )
        return chosen


def _same_checksum(named: CompletedPart, stored: PartInfo) -> bool:
    if named.checksum is None or stored.checksum is None:
        return True
    return named.checksum == stored.checksum.get("value")


def _composite(algorithm: str | None, parts: list[PartInfo]) -> dict[str, str] | None:
    """S3's COMPOSITE checksum of a multipart object: the checksum of the parts' binary
    checksums, then ``-<parts>``; None unless every part has one of ``algorithm``."""
    if algorithm is None or not all(
        p.checksum is not None and p.checksum.get("algorithm") == algorithm for p in parts
    ):
        return None
    checksum = new_checksum(algorithm)
    for part in parts:
        assert part.checksum is not None
        checksum.update(base64.b64decode(part.checksum["value"]))
    return {
        "algorithm": algorithm,
        "value": f"{checksum.value()}-{len(parts)}",
        "type": "COMPOSITE",
    }


def check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise AwsError(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=str(number),
        )
