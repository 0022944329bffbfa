"""S3 multipart upload operations: Create, UploadPart (streamed to disk), UploadPartCopy,
Complete, Abort, ListParts and ListMultipartUploads."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nimbus.api.s3_call import Handler, S3Call
from nimbus.api.s3_objects import (
    MAX_PUT,
    check_put_size,
    checksum_output,
    new_object,
    parse_copy_source,
    parse_range,
    refuse_unsupported,
)
from nimbus.api.s3_wire import Reply, quoted, timestamp
from nimbus.clock import now_ms
from nimbus.protocol.errors import AwsError
from nimbus.s3.checksums import check_algorithm
from nimbus.s3.conditions import ReadConditions, WriteConditions
from nimbus.s3.errors import entity_too_large, invalid_argument, invalid_version, not_implemented
from nimbus.s3.multipart import CompletedPart, check_part_number
from nimbus.s3.names import check_key
from nimbus.s3.records import PartInfo, UploadInfo
from nimbus.threads import blocking

_CHECKSUM_MEMBERS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)


async def create_upload(call: S3Call) -> Reply:
    params = call.params
    check_key(call.key)
    refuse_unsupported(params)
    algorithm = params.get("ChecksumAlgorithm")
    if algorithm is not None:
        algorithm = check_algorithm(algorithm)
    if params.get("ChecksumType") not in (None, "COMPOSITE"):
        raise not_implemented(
            f"checksum type {params['ChecksumType']} (multipart checksums are COMPOSITE)",
            "x-amz-checksum-type",
        )
    upload = await blocking(
        call.store.uploads.create, call.bucket, call.key, new_object(call), algorithm
    )
    output: dict[str, Any] = {"Bucket": call.bucket, "Key": call.key, "UploadId": upload.upload_id}
    if algorithm is not None:
        output["ChecksumAlgorithm"] = algorithm
        output["ChecksumType"] = "COMPOSITE"
    return call.reply(output)


async def _upload(call: S3Call) -> UploadInfo:
    return await blocking(call.store.uploads.get, call.bucket, call.key, call.params["UploadId"])


async def upload_part(call: S3Call) -> Reply:
    params = call.params
    number = params["PartNumber"]
    check_part_number(number)
    payload = call.payload
    check_put_size(payload)
    upload = await _upload(call)  # NoSuchUpload before a byte of the body is read
    if upload.checksum_algorithm is not None:
        payload.compute(upload.checksum_algorithm)
    store = call.store
    writer = await blocking(store.blobs.writer)
    try:
        await payload.write_to(writer.write)
        payload.finish(writer.etag)
        blob = await blocking(writer.commit)
    except BaseException:
        await blocking(writer.discard)
        raise
    part = await blocking(
        store.uploads.put_part,
        upload,
        number,
        blob,
        writer.size,
        writer.etag,
        payload.computed_checksum(),
    )
    return call.reply({"ETag": quoted(part.etag), **_part_checksum(part)})


def _part_checksum(part: PartInfo) -> dict[str, str]:
    if not part.checksum:
        return {}
    return {f"Checksum{part.checksum['algorithm']}": part.checksum["value"]}


async def upload_part_copy(call: S3Call) -> Reply:
    params = call.params
    number = params["PartNumber"]
    check_part_number(number)
    source_bucket, source_key, version = parse_copy_source(params["CopySource"])
    if version is not None and version != "null":
        raise invalid_version(version)
    upload = await _upload(call)
    conditions = ReadConditions(
        if_match=params.get("CopySourceIfMatch"),
        if_none_match=params.get("CopySourceIfNoneMatch"),
        if_modified_since=params.get("CopySourceIfModifiedSince"),
        if_unmodified_since=params.get("CopySourceIfUnmodifiedSince"),
        prefix="x-amz-copy-source-",
    )
    store = call.store

    def copy() -> tuple[PartInfo, int]:
        with store.objects.open(source_bucket, source_key) as source:
            conditions.check(source.info, now_ms())
            text = params.get("CopySourceRange")
            wanted = parse_range(text, source.info.size) if text else None
            if text and wanted is None:
                raise invalid_argument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last "
                    "where first and last are the zero-based offsets of the first and last "
                    "bytes to copy",
                    "x-amz-copy-source-range",
                    text,
                )
            start = wanted.start if wanted is not None else 0
            length = wanted.length if wanted is not None else source.info.size
            if length > MAX_PUT:
                raise entity_too_large(length, MAX_PUT)
            writer = store.blobs.writer(upload.checksum_algorithm)
            try:
                source.file.seek(start)
                writer.copy_from(source.file, length)
                blob = writer.commit()
            except BaseException:
                writer.discard()
                raise
            checksum = (
                {"algorithm": writer.checksum.algorithm, "value": writer.checksum.value()}
                if writer.checksum is not None
                else None
            )
        part = store.uploads.put_part(upload, number, blob, writer.size, writer.etag, checksum)
        return part, part.last_modified_ms

    part, modified = await blocking(copy)
    result = {"ETag": quoted(part.etag), "LastModified": timestamp(modified)}
    result.update(_part_checksum(part))
    return call.reply({"CopyPartResult": result})


async def complete_upload(call: S3Call) -> Reply:
    params = call.params
    named = []
    for item in (params.get("MultipartUpload") or {}).get("Parts") or []:
        if item.get("PartNumber") is None or item.get("ETag") is None:
            raise AwsError(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our "
                "published schema: every Part needs a PartNumber and an ETag.",
            )
        checksum = next((item[m] for m in _CHECKSUM_MEMBERS if item.get(m)), None)
        named.append(CompletedPart(item["PartNumber"], item["ETag"], checksum))
    conditions = WriteConditions.of(params.get("IfMatch"), params.get("IfNoneMatch"))
    info = await blocking(
        call.store.uploads.complete,
        call.bucket,
        call.key,
        params["UploadId"],
        named,
        conditions,
    )
    if call.virtual_host:
        location = f"{call.base_url}/{quote(call.key)}"
    else:
        location = f"{call.base_url}/{call.bucket}/{quote(call.key)}"
    output = {
        "Location": location,
        "Bucket": call.bucket,
        "Key": call.key,
        "ETag": quoted(info.etag),
        **checksum_output(info.checksum),
    }
    return call.reply(output)


async def abort_upload(call: S3Call) -> Reply:
    await blocking(call.store.uploads.abort, call.bucket, call.key, call.params["UploadId"])
    return call.reply()


async def list_parts(call: S3Call) -> Reply:
    params = call.params
    after = params.get("PartNumberMarker") or 0
    limit = params.get("MaxParts")
    limit = 1000 if limit is None else max(0, min(limit, 1000))
    upload, parts, truncated = await blocking(
        call.store.uploads.parts, call.bucket, call.key, params["UploadId"], after, limit
    )
    output: dict[str, Any] = {
        "Bucket": call.bucket,
        "Key": call.key,
        "UploadId": upload.upload_id,
        "PartNumberMarker": after,
        "MaxParts": limit,
        "IsTruncated": truncated,
        "Parts": [
            {
                "PartNumber": p.part_number,
                "LastModified": timestamp(p.last_modified_ms),
                "ETag": quoted(p.etag),
                "Size": p.size,
                **_part_checksum(p),
            }
            for p in parts
        ]
        or None,
        "Initiator": {"ID": call.owner()["ID"], "DisplayName": call.owner()["DisplayName"]},
        "Owner": call.owner(),
        "StorageClass": "STANDARD",
    }
    if parts:
        output["NextPartNumberMarker"] = parts[-1].part_number
    if upload.checksum_algorithm:
        output["ChecksumAlgorithm"] = upload.checksum_algorithm
        output["ChecksumType"] = "COMPOSITE"
    return call.reply(output)


async def list_uploads(call: S3Call) -> Reply:
    params = call.params
    prefix = params.get("Prefix") or ""
    delimiter = params.get("Delimiter") or ""
    key_marker = params.get("KeyMarker") or ""
    upload_marker = params.get("UploadIdMarker") or ""
    limit = params.get("MaxUploads")
    limit = 1000 if limit is None else max(0, min(limit, 1000))
    found, _ = await blocking(
        lambda: call.store.uploads.uploads(
            call.bucket,
            prefix=prefix,
            key_marker=key_marker,
            upload_id_marker=upload_marker,
            limit=100_000,
        )
    )
    uploads: list[UploadInfo] = []
    prefixes: list[str] = []
    truncated = False
    for upload in found:
        if len(uploads) + len(prefixes) >= limit:
            truncated = True
            break
        rest = upload.key[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common not in prefixes:
                prefixes.append(common)
            continue
        uploads.append(upload)
    output: dict[str, Any] = {
        "Bucket": call.bucket,
        "KeyMarker": key_marker,
        "UploadIdMarker": upload_marker,
        "MaxUploads": limit,
        "IsTruncated": truncated,
        "Uploads": [
            {
                "UploadId": u.upload_id,
                "Key": u.key,
                "Initiated": timestamp(u.created_ms),
                "StorageClass": "STANDARD",
                "Owner": call.owner(),
                "Initiator": call.owner(),
                **({"ChecksumAlgorithm": u.checksum_algorithm} if u.checksum_algorithm else {}),
            }
            for u in uploads
        ]
        or None,
        "CommonPrefixes": [{"Prefix": p} for p in prefixes] or None,
    }
    if prefix:
        output["Prefix"] = prefix
    if delimiter:
        output["Delimiter"] = delimiter
    if truncated and uploads:
        output["NextKeyMarker"] = uploads[-1].key
        output["NextUploadIdMarker"] = uploads[-1].upload_id
    return call.reply(output)


MULTIPART_HANDLERS: dict[str, Handler] = {
    "CreateMultipartUpload": create_upload,
    "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy,
    "CompleteMultipartUpload": complete_upload,
    "AbortMultipartUpload": abort_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_uploads,
}
