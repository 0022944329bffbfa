"""S3 object operations: Put (streamed to disk), Get and Head (streamed from disk, with
ranges and conditions), Copy, Delete, DeleteObjects, and ListObjects v1 and v2."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from nimbus.api.s3_call import Handler, S3Call
from nimbus.api.s3_payload import Payload
from nimbus.api.s3_wire import Reply, quoted, timestamp
from nimbus.clock import now_ms
from nimbus.protocol.errors import AwsError
from nimbus.s3.conditions import NotModified, ReadConditions, WriteConditions
from nimbus.s3.errors import (
    entity_too_large,
    invalid_argument,
    invalid_request,
    invalid_version,
    not_implemented,
)
from nimbus.s3.names import check_key
from nimbus.s3.records import ListPage, NewObject, ObjectInfo
from nimbus.threads import blocking

MAX_PUT = 5 * 1024**3  # one PutObject, one part, one CopyObject source: 5 GiB
MAX_METADATA = 2048  # bytes of x-amz-meta-* names and values
MAX_DELETE = 1000
# Headers stored with an object and returned with it, by their canonical names.
STORED_HEADERS = {
    "content-type": "Content-Type",
    "content-encoding": "Content-Encoding",
    "content-disposition": "Content-Disposition",
    "content-language": "Content-Language",
    "cache-control": "Cache-Control",
    "expires": "Expires",
}
# GetObject's response-* query parameters: the header each one overrides.
RESPONSE_OVERRIDES = {
    "ResponseContentType": "Content-Type",
    "ResponseContentEncoding": "Content-Encoding",
    "ResponseContentDisposition": "Content-Disposition",
    "ResponseContentLanguage": "Content-Language",
    "ResponseCacheControl": "Cache-Control",
    "ResponseExpires": "Expires",
}
_STORAGE_CLASSES = (None, "STANDARD")


# -- what a writer may ask for ------------------------------------------------------------


def refuse_unsupported(params: dict[str, Any]) -> None:
    """Features of S3 nimbus does not have, refused rather than silently dropped."""
    acl = params.get("ACL")
    if acl is not None and acl not in ("private", "bucket-owner-full-control"):
        raise not_implemented(f"ACL '{acl}' (nimbus has one owner and no ACLs)", "x-amz-acl")
    if any(
        params.get(g) for g in ("GrantFullControl", "GrantRead", "GrantReadACP", "GrantWriteACP")
    ):
        raise not_implemented("grants (nimbus has one owner and no ACLs)", "x-amz-grant-*")
    if params.get("StorageClass") not in _STORAGE_CLASSES:
        raise not_implemented(
            f"storage class {params['StorageClass']} (every object is STANDARD)",
            "x-amz-storage-class",
        )
    if params.get("ServerSideEncryption") or params.get("SSECustomerAlgorithm"):
        raise not_implemented("server-side encryption", "x-amz-server-side-encryption")
    if params.get("Tagging"):
        raise not_implemented("object tagging", "x-amz-tagging")
    if params.get("ObjectLockMode") or params.get("ObjectLockLegalHoldStatus"):
        raise not_implemented("object lock", "x-amz-object-lock-mode")
    if params.get("WebsiteRedirectLocation"):
        raise not_implemented("website redirects", "x-amz-website-redirect-location")


def new_object(call: S3Call) -> NewObject:
    """The headers and user metadata a PutObject (or CreateMultipartUpload, or a copy
    that replaces metadata) stores with the object."""
    headers: dict[str, str] = {}
    for name, canonical in STORED_HEADERS.items():
        value = call.headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            kept = [e.strip() for e in value.split(",") if e.strip() and e.strip() != "aws-chunked"]
            if not kept:
                continue
            value = ",".join(kept)
        headers[canonical] = value
    headers.setdefault("Content-Type", "binary/octet-stream")
    metadata = {k.lower(): v for k, v in (call.params.get("Metadata") or {}).items()}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_METADATA:
        raise AwsError(
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size",
            MaxSizeAllowed=str(MAX_METADATA),
            Size=str(size),
        )
    return NewObject(headers=headers, metadata=metadata)


def checksum_output(checksum: dict[str, str] | None) -> dict[str, str]:
    if not checksum:
        return {}
    algorithm = checksum["algorithm"]
    return {
        f"Checksum{algorithm}": checksum["value"],
        "ChecksumType": checksum.get("type", "FULL_OBJECT"),
    }


def check_version(params: dict[str, Any]) -> None:
    version = params.get("VersionId")
    if version is not None and version != "null":
        raise invalid_version(version)


# -- put --------------------------------------------------------------------------------


def check_put_size(payload: Payload) -> None:
    """A body S3 takes in one PutObject or UploadPart: its length declared, at most
    ``MAX_PUT`` (checked before a byte of it is read)."""
    if payload.declared_size is None:
        raise AwsError(
            "MissingContentLength", "You must provide the Content-Length HTTP header.", status=411
        )
    if payload.declared_size > MAX_PUT:
        raise entity_too_large(payload.declared_size, MAX_PUT)


async def put_object(call: S3Call) -> Reply:
    params = call.params
    check_key(call.key)
    refuse_unsupported(params)
    payload = call.payload
    check_put_size(payload)
    store = call.store
    await blocking(store.buckets.get, call.bucket)  # before a byte of the body is read
    conditions = WriteConditions.of(params.get("IfMatch"), params.get("IfNoneMatch"))
    new = new_object(call)
    writer = await blocking(store.blobs.writer)
    try:
        await payload.write_to(writer.write)
        payload.finish(writer.etag)
        blob = await blocking(writer.commit)
    except BaseException:
        await blocking(writer.discard)
        raise
    info = ObjectInfo(
        bucket=call.bucket,
        key=call.key,
        blob=blob,
        size=writer.size,
        etag=writer.etag,
        last_modified_ms=0,
        headers=new.headers,
        metadata=new.metadata,
        checksum=payload.computed_checksum(),
    )
    info = await blocking(store.objects.put, info, event="ObjectCreated:Put", conditions=conditions)
    return call.reply({"ETag": quoted(info.etag), **checksum_output(info.checksum)})


# -- get and head -----------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """S3's reading of a Range header: None (the whole object) for one it ignores
    (malformed, several ranges); ``InvalidRange`` (416) for one past the end."""
    if header is None:
        return None
    text = header.strip()
    if not text.startswith("bytes=") or "," in text:
        return None
    first, dash, last = text[6:].strip().partition("-")
    if not dash or not all(part == "" or (part.isascii() and part.isdigit())
                           for part in (first, last)):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    return ByteRange(start, min(end, size - 1))


def _unsatisfiable(header: str, size: int) -> AwsError:
    return AwsError(
        "InvalidRange",
        "The requested range is not satisfiable",
        status=416,
        ActualObjectSize=str(size),
        RangeRequested=header,
    )


def _read_conditions(params: dict[str, Any]) -> ReadConditions:
    return ReadConditions(
        if_match=params.get("IfMatch"),
        if_none_match=params.get("IfNoneMatch"),
        if_modified_since=params.get("IfModifiedSince"),
        if_unmodified_since=params.get("IfUnmodifiedSince"),
    )


def _object_headers(call: S3Call, info: ObjectInfo) -> dict[str, Any]:
    output: dict[str, Any] = {
        "AcceptRanges": "bytes",
        "LastModified": timestamp(info.last_modified_ms),
        "ETag": quoted(info.etag),
        "Metadata": info.metadata,
    }
    if info.parts_count is not None and call.params.get("PartNumber") is not None:
        output["PartsCount"] = info.parts_count
    return output


def _part_range(info: ObjectInfo, number: int) -> ByteRange:
    sizes = info.parts or [info.size]
    if not 1 <= number <= len(sizes):
        raise AwsError(
            "InvalidPartNumber",
            "The requested partnumber is not satisfiable",
            status=416,
            PartNumberRequested=str(number),
            ActualPartCount=str(len(sizes)),
        )
    start = sum(sizes[: number - 1])
    return ByteRange(start, start + sizes[number - 1] - 1)


async def get_object(call: S3Call) -> Reply:
    return await _read(call, head=False)


async def head_object(call: S3Call) -> Reply:
    return await _read(call, head=True)


async def _read(call: S3Call, head: bool) -> Reply:
    params = call.params
    check_version(params)
    store = call.store
    if head:
        info = await blocking(store.objects.get, call.bucket, call.key)
        file = None
    else:
        opened = await blocking(store.objects.open, call.bucket, call.key)
        info, file = opened.info, opened.file
    try:
        reply = _answer(call, info)
    except BaseException:
        if file is not None:
            file.close()
        raise
    reply.file = file
    if head:
        reply.file = None
        reply.length = 0
    return reply


def _answer(call: S3Call, info: ObjectInfo) -> Reply:
    params = call.params
    try:
        _read_conditions(params).check(info, now_ms())
    except NotModified:
        headers = {
            "ETag": quoted(info.etag),
            "Last-Modified": _http_date(info.last_modified_ms),
        }
        return Reply(304, headers)
    part = params.get("PartNumber")
    if part is not None and params.get("Range") is not None:
        raise invalid_request("Cannot specify both Range header and partNumber query parameter")
    wanted = (
        _part_range(info, part)
        if part is not None
        else parse_range(call.headers.get("range"), info.size)
    )
    output = _object_headers(call, info)
    whole = wanted is None or wanted.length == info.size
    if wanted is None:
        wanted = ByteRange(0, info.size - 1)
    else:
        output["ContentRange"] = f"bytes {wanted.start}-{wanted.end}/{info.size}"
    output["ContentLength"] = wanted.length
    if whole and call.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        output.update(checksum_output(info.checksum))
    reply = call.reply(output)
    headers = {**info.headers}
    for member, header in RESPONSE_OVERRIDES.items():
        value = params.get(member)
        if value is not None:
            headers[header] = (
                value if member != "ResponseExpires" else _http_date(int(value.timestamp() * 1000))
            )
    headers.setdefault("Content-Type", info.content_type)
    # Stored headers as stored (Expires verbatim), replacing the serialiser's defaults.
    for name in list(reply.headers):
        if name.lower() in STORED_HEADERS:
            del reply.headers[name]
    reply.headers.update(headers)
    reply.status = 206 if "ContentRange" in output else 200
    reply.offset = wanted.start
    reply.length = max(wanted.length, 0)
    return reply


def _http_date(ms: int) -> str:
    from email.utils import formatdate

    return formatdate(ms // 1000, usegmt=True)


# -- copy -------------------------------------------------------------------------------


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """``x-amz-copy-source``: ``[/]bucket/key[?versionId=...]`` (URL-encoded)."""
    text, _, query = value.partition("?")
    text = unquote(text).lstrip("/")
    bucket, slash, key = text.partition("/")
    if not slash or not bucket or not key:
        raise invalid_argument(
            "Invalid copy source object key: name the source as bucket/key.",
            "x-amz-copy-source",
            value,
        )
    version = None
    for pair in query.split("&") if query else []:
        name, _, item = pair.partition("=")
        if name == "versionId":
            version = unquote(item)
    return bucket, key, version


def _copy_conditions(params: dict[str, Any]) -> ReadConditions:
    return ReadConditions(
        if_match=params.get("CopySourceIfMatch"),
        if_none_match=params.get("CopySourceIfNoneMatch"),
        if_modified_since=params.get("CopySourceIfModifiedSince"),
        if_unmodified_since=params.get("CopySourceIfUnmodifiedSince"),
        prefix="x-amz-copy-source-",
    )


async def copy_object(call: S3Call) -> Reply:
    params = call.params
    check_key(call.key)
    refuse_unsupported(params)
    source_bucket, source_key, version = parse_copy_source(params["CopySource"])
    if version is not None and version != "null":
        raise invalid_version(version)
    directive = (params.get("MetadataDirective") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive", directive)
    if params.get("TaggingDirective") not in (None, "COPY"):
        raise not_implemented("object tagging", "x-amz-tagging-directive")
    if (source_bucket, source_key) == (call.bucket, call.key) and directive == "COPY":
        raise invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes."
        )
    store = call.store
    await blocking(store.buckets.get, call.bucket)
    conditions = WriteConditions.of(params.get("IfMatch"), params.get("IfNoneMatch"))
    source_conditions = _copy_conditions(params)
    replaced = new_object(call) if directive == "REPLACE" else None

    def check_source(source: ObjectInfo) -> None:
        source_conditions.check(source, now_ms())
        if source.size > MAX_PUT:
            raise invalid_request(
                "The specified copy source is larger than the maximum allowable size for a "
                f"copy source: {MAX_PUT}"
            )

    info = await blocking(
        store.objects.copy,
        source_bucket,
        source_key,
        call.bucket,
        call.key,
        new=replaced,
        check_source=check_source,
        conditions=conditions,
    )
    result = {"ETag": quoted(info.etag), "LastModified": timestamp(info.last_modified_ms)}
    result.update(checksum_output(info.checksum))
    return call.reply({"CopyObjectResult": result})


# -- delete -----------------------------------------------------------------------------


async def delete_object(call: S3Call) -> Reply:
    check_version(call.params)
    await blocking(call.store.objects.delete, call.bucket, call.key)
    return call.reply()


async def delete_objects(call: S3Call) -> Reply:
    headers = call.headers
    if (
        "content-md5" not in headers
        and not any(h.startswith("x-amz-checksum-") for h in headers)
        and not call.payload.trailers
    ):
        raise invalid_request("Missing required header for this request: Content-MD5")
    request = call.params.get("Delete") or {}
    objects = request.get("Objects") or []
    if not objects or len(objects) > MAX_DELETE:
        raise AwsError(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            f"published schema: name 1 to {MAX_DELETE} objects.",
        )
    keys: list[str] = []
    errors: list[dict[str, str]] = []
    for item in objects:
        key = item.get("Key", "")
        version = item.get("VersionId")
        if version is not None and version != "null":
            errors.append(
                {
                    "Key": key,
                    "VersionId": version,
                    "Code": "NoSuchVersion",
                    "Message": "The specified version does not exist.",
                }
            )
            continue
        keys.append(key)
    await blocking(call.store.objects.delete_many, call.bucket, keys)
    output: dict[str, Any] = {}
    if not request.get("Quiet"):
        output["Deleted"] = [{"Key": key} for key in keys]
    if errors:
        output["Errors"] = errors
    return call.reply(output)


# -- list -------------------------------------------------------------------------------


def _max_keys(params: dict[str, Any]) -> int:
    value = params.get("MaxKeys")
    if value is None:
        return 1000
    if value < 0:
        raise invalid_argument(
            "Argument maxKeys must be an integer between 0 and 2147483647", "maxKeys", str(value)
        )
    return min(value, 1000)


def _encoder(params: dict[str, Any]) -> Any:
    encoding = params.get("EncodingType")
    if encoding is None:
        return lambda text: text
    if encoding != "url":
        raise invalid_argument(
            "Invalid Encoding Method specified in Request", "encoding-type", encoding
        )
    return lambda text: quote(text, safe="/~") if text is not None else None


def _contents(call: S3Call, page: ListPage, encode: Any, owner: bool) -> list[dict[str, Any]]:
    found = []
    for info in page.contents:
        item: dict[str, Any] = {
            "Key": encode(info.key),
            "LastModified": timestamp(info.last_modified_ms),
            "ETag": quoted(info.etag),
            "Size": info.size,
            "StorageClass": "STANDARD",
        }
        if info.checksum:
            item["ChecksumAlgorithm"] = [info.checksum["algorithm"]]
            item["ChecksumType"] = info.checksum.get("type", "FULL_OBJECT")
        if owner:
            item["Owner"] = call.owner()
        found.append(item)
    return found


def _token(item: str) -> str:
    return base64.urlsafe_b64encode(item.encode()).decode()


def _untoken(token: str) -> str:
    try:
        item = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError):
        item = None
    if not item or _token(item) != token:  # only what a page of ours handed out
        raise invalid_argument(
            "The continuation token provided is incorrect", "continuation-token", token
        )
    return item


async def list_objects_v2(call: S3Call) -> Reply:
    params = call.params
    encode = _encoder(params)
    prefix = params.get("Prefix") or ""
    delimiter = params.get("Delimiter") or ""
    max_keys = _max_keys(params)
    token = params.get("ContinuationToken")
    after = _untoken(token) if token else params.get("StartAfter")
    page = await blocking(
        call.store.objects.list_page,
        call.bucket,
        prefix=prefix,
        delimiter=delimiter,
        after=after,
        max_keys=max_keys,
    )
    output: dict[str, Any] = {
        "Name": call.bucket,
        "Prefix": encode(prefix),
        "MaxKeys": max_keys,
        "KeyCount": page.count,
        "IsTruncated": page.truncated,
        "Contents": _contents(call, page, encode, bool(params.get("FetchOwner"))) or None,
        "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes] or None,
    }
    if delimiter:
        output["Delimiter"] = encode(delimiter)
    if params.get("EncodingType"):
        output["EncodingType"] = params["EncodingType"]
    if token:
        output["ContinuationToken"] = token
    if params.get("StartAfter"):
        output["StartAfter"] = encode(params["StartAfter"])
    if page.truncated and page.last is not None:
        output["NextContinuationToken"] = _token(page.last)
    return call.reply(output)


async def list_objects(call: S3Call) -> Reply:
    params = call.params
    encode = _encoder(params)
    prefix = params.get("Prefix") or ""
    delimiter = params.get("Delimiter") or ""
    max_keys = _max_keys(params)
    marker = params.get("Marker") or None
    page = await blocking(
        call.store.objects.list_page,
        call.bucket,
        prefix=prefix,
        delimiter=delimiter,
        after=marker,
        max_keys=max_keys,
    )
    output: dict[str, Any] = {
        "Name": call.bucket,
        "Prefix": encode(prefix),
        "Marker": encode(marker or ""),
        "MaxKeys": max_keys,
        "IsTruncated": page.truncated,
        "Contents": _contents(call, page, encode, True) or None,
        "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes] or None,
    }
    if delimiter:
        output["Delimiter"] = encode(delimiter)
        if page.truncated and page.last is not None:
            output["NextMarker"] = encode(page.last)
    if params.get("EncodingType"):
        output["EncodingType"] = params["EncodingType"]
    return call.reply(output)


OBJECT_HANDLERS: dict[str, Handler] = {
    "PutObject": put_object,
    "GetObject": get_object,
    "HeadObject": head_object,
    "CopyObject": copy_object,
    "DeleteObject": delete_object,
    "DeleteObjects": delete_objects,
    "ListObjectsV2": list_objects_v2,
    "ListObjects": list_objects,
}
