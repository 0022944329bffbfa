"""Every bad input gets Lambda's modeled error through boto3, and nothing is stored."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import HELLO, ROLE, make_zip
from tests.nimbus_process import NimbusProcess

SERVER_PER_TEST = True  # lam talks to the test's own nimbus, which must store nothing
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def create(lam: Any, name: str = "fn", code: bytes = HELLO, **kw: Any) -> dict[str, Any]:
    args = dict(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": code},
    )
    args.update(kw)
    return lam.create_function(**args)


def invalid(lam, match: str):
    return pytest.raises(lam.exceptions.InvalidParameterValueException, match=match)


def assert_nothing_stored(nimbus: NimbusProcess, lam) -> None:
    assert lam.list_functions()["Functions"] == []
    code = nimbus.data_dir / "code"
    assert [p for p in (code / "blobs").rglob("*") if p.is_file()] == []
    assert list((code / "trees").iterdir()) == [] and list((code / "tmp").iterdir()) == []


def symlink_zip(target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("escape")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
        zf.writestr("app.py", "def handler(e, c): pass\n")
    return buf.getvalue()


def lying_zip() -> bytes:
    import struct

    buf = bytearray(make_zip({"bomb.bin": b"\0" * (8 << 20)}))
    struct.pack_into("<I", buf, buf.find(b"PK\x03\x04") + 22, 100)
    struct.pack_into("<I", buf, buf.find(b"PK\x01\x02") + 24, 100)
    return bytes(buf)


BAD_PACKAGES = {
    "not a zip": (b"this is not a zip file", "Could not unzip uploaded file"),
    "parent path": (make_zip({"../../etc/passwd": "x"}), "contains '..'"),
    "absolute path": (make_zip({"/etc/passwd": "x"}), "absolute path"),
    "symlink outside": (symlink_zip("/etc/shadow"), "symlink to '/etc/shadow', outside"),
    "size lie (bomb)": (lying_zip(), "Could not unzip|zip bomb"),
}


@pytest.mark.parametrize("case", list(BAD_PACKAGES))
def test_bad_packages_are_refused(nimbus: NimbusProcess, lam, case: str) -> None:
    data, message = BAD_PACKAGES[case]
    with invalid(lam, message):
        create(lam, code=data)
    assert_nothing_stored(nimbus, lam)


def test_size_and_count_limits(nimbus: NimbusProcess, lam) -> None:
    too_many = make_zip({f"m{i}.py": "" for i in range(20_001)})
    with invalid(lam, "20001 entries; at most 20000"):
        create(lam, code=too_many)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", "")
        with zf.open("zeros.bin", "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 20)
            for _ in range(251):
                member.write(chunk)
    with invalid(lam, "Unzipped size must be smaller than 262144000 bytes"):
        create(lam, code=buf.getvalue())
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("blob.bin", os.urandom(51 << 20))
    # 51 MB of zip is over Lambda's 50 MB, i.e. over the base64 request limit.
    with pytest.raises(
        lam.exceptions.RequestTooLargeException, match="Request must be smaller than 69905067 bytes"
    ):
        create(lam, code=big.getvalue())
    assert_nothing_stored(nimbus, lam)


def test_settings_errors(nimbus: NimbusProcess) -> None:
    lam = nimbus.client(validate=False)  # let the server, not botocore, judge the input
    with invalid(
        lam, r"python2\.7 is not supported.*Supported runtimes: .*python3\.1\d.*provided\.al2023"
    ):
        create(lam, Runtime="python2.7")

    def validation(match: str, **kw: object) -> None:
        with pytest.raises(ClientError, match=match) as info:
            create(lam, **kw)
        assert info.value.response["Error"]["Code"] == "ValidationException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    validation(r"Value '100' at 'memorySize' .* greater than or equal to 128", MemorySize=100)
    validation(r"Value '10241' at 'memorySize' .* less than or equal to 10240", MemorySize=10241)
    validation(r"Value '0' at 'timeout' .* greater than or equal to 1", Timeout=0)
    validation(r"Value '901' at 'timeout' .* less than or equal to 900", Timeout=901)
    validation(
        r"at 'ephemeralStorage.size' .* greater than or equal to 512",
        EphemeralStorage={"Size": 100},
    )
    validation(r"2 validation errors detected", Timeout=0, MemorySize=1)
    validation(r"Value 'bad name!' at 'functionName' .* regular expression", name="bad name!")
    # Lambda words a name over 64 characters as a validation error, but sends it as an
    # InvalidParameterValueException (recorded: test_function_arns, long_function_name_exc).
    with invalid(lam, r": 1 validation error detected: Value 'x{65}' at 'functionName' "
                      r"failed to satisfy constraint: Member must have length less than or "
                      r"equal to 64$"):  # fmt: skip
        create(lam, name="x" * 65)
    validation(r"Value 'not-a-role' at 'role'", Role="not-a-role")
    with invalid(lam, r"reserved keys .*AWS_REGION"):
        create(lam, Environment={"Variables": {"AWS_REGION": "x"}})
    with invalid(lam, "exceeded the 4KB limit"):
        create(lam, Environment={"Variables": {"BIG": "x" * 5000}})
    with invalid(lam, "arm64 is not available"):
        create(lam, Architectures=["arm64"])
    with invalid(lam, "S3 Error Code: NoSuchBucket"):  # a bucket nimbus lacks
        lam.create_function(
            FunctionName="s3",
            Runtime="python3.12",
            Role=ROLE,
            Handler="a.b",
            Code={"S3Bucket": "bkt", "S3Key": "k.zip"},
        )
    with invalid(lam, "Runtime and Handler are mandatory"):
        lam.create_function(
            FunctionName="nohandler", Runtime="python3.12", Role=ROLE, Code={"ZipFile": HELLO}
        )
    assert_nothing_stored(nimbus, lam)


def test_conflicts_and_missing(nimbus: NimbusProcess, lam) -> None:
    first = create(lam)
    with pytest.raises(
        lam.exceptions.ResourceConflictException, match="Function already exist: fn"
    ):
        create(lam)
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match=r"function:fn:7"):
        lam.get_function(FunctionName="fn", Qualifier="7")
    # GetAlias and UpdateAlias word a missing alias differently, as Lambda does (recorded:
    # test_notfound_and_invalid_routingconfigs, test_non_existent_alias_update).
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.get_alias(FunctionName="fn", Name="nope")
    assert error(missing) == (
        "ResourceNotFoundException", 404, f"Cannot find alias arn: {ARN}fn:nope"
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.update_alias(FunctionName="fn", Name="nope", Description="x")
    assert error(missing) == ("ResourceNotFoundException", 404, f"Alias not found: {ARN}fn:nope")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_code(FunctionName="ghost", ZipFile=HELLO)
    with pytest.raises(lam.exceptions.PreconditionFailedException, match="Revision Id"):
        lam.update_function_configuration(FunctionName="fn", Timeout=5, RevisionId="stale")
    with invalid(lam, "cannot be deleted") as typed:
        lam.delete_function(FunctionName="fn", Qualifier="$LATEST")
    assert typed.value.response["Type"] == "User"  # as Lambda's errors mostly are
    with invalid(lam, "derived qualifier"):
        lam.get_function(FunctionName="fn:1", Qualifier="2")
    with invalid(lam, "not a taggable"):
        lam.list_tags(Resource="arn:aws:lambda:us-east-1:000000000000:function:fn:1")
    with invalid(lam, r"minimum value of \[100\]") as untyped:
        lam.put_function_concurrency(FunctionName="fn", ReservedConcurrentExecutions=901)
    # Lambda sends this one without Type (recorded: test_function_concurrency_limits).
    assert "Type" not in untyped.value.response and "message" in untyped.value.response
    published = lam.publish_version(FunctionName="fn")
    # Publishing gives $LATEST a new RevisionId, as on Lambda (recorded:
    # test_function_revisions_version_and_alias): the one read before no longer guards.
    latest = lam.get_function(FunctionName="fn")["Configuration"]["RevisionId"]
    assert latest not in (first["RevisionId"], published["RevisionId"])
    with pytest.raises(lam.exceptions.PreconditionFailedException, match="Revision Id"):
        lam.update_function_configuration(
            FunctionName="fn", Timeout=5, RevisionId=first["RevisionId"]
        )
    # Publishing again with nothing changed returns that version and keeps $LATEST's.
    assert lam.publish_version(FunctionName="fn", RevisionId=latest)["Version"] == "1"
    assert lam.get_function(FunctionName="fn")["Configuration"]["RevisionId"] == latest
    with invalid(lam, r": \$LATEST is not supported for an alias pointing to more than 1 "
                      r"version$") as untyped:  # fmt: skip
        lam.create_alias(
            FunctionName="fn",
            Name="a",
            FunctionVersion="$LATEST",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
        )
    assert "Type" not in untyped.value.response  # as Lambda sends it
    with invalid(lam, "greater than 1"):
        lam.create_alias(
            FunctionName="fn",
            Name="a",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.5, "3": 0.5}},
        )
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="function:fn:2"):
        lam.create_alias(
            FunctionName="fn",
            Name="a",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
        )
    # the failed updates stored nothing
    assert lam.get_function(FunctionName="fn")["Configuration"]["RevisionId"] == latest
    assert lam.list_aliases(FunctionName="fn")["Aliases"] == []


def test_bad_json_through_boto3(lam) -> None:
    def corrupt(request, **_):
        request.body = b"{not json"
        request.headers["Content-Length"] = str(len(request.body))

    lam.meta.events.register("before-send.lambda.CreateFunction", corrupt)
    with pytest.raises(
        lam.exceptions.InvalidRequestContentException,
        match="Could not parse request body into json",
    ):
        create(lam)


JUNK = [
    b"[]",
    b"null",
    b"123",
    b'"x"',
    b'{"Timeout": "abc"}',
    b'{"Environment": 5}',
    b'{"Tags": []}',
    b'{"Layers": {}}',
    b'{"RoutingConfig": 1}',
    b"\xff\xfe",
    b'{"MemorySize": true}',
    b'{"Code": []}',
    b'{"FunctionName": 5}',
    b'{"ReservedConcurrentExecutions": -1}',
    b'{"EphemeralStorage": {"Size": "x"}}',
    b'{"Name": 1, "FunctionVersion": []}',
    b'{"Environment": {"Variables": {"A": 1}}}',
]
ROUTES = [
    ("POST", "/2015-03-31/functions"),
    ("PUT", "/2015-03-31/functions/fn/configuration"),
    ("PUT", "/2015-03-31/functions/fn/code"),
    ("POST", "/2015-03-31/functions/fn/versions"),
    ("POST", "/2015-03-31/functions/fn/aliases"),
    ("PUT", "/2015-03-31/functions/fn/aliases/a"),
    ("PUT", "/2017-10-31/functions/fn/concurrency"),
    ("POST", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:fn"),
    ("GET", "/2015-03-31/functions/?MaxItems=abc"),
    ("GET", "/2015-03-31/functions/?Marker=@@"),
    ("GET", "/2015-03-31/functions/fn%00x"),
    ("DELETE", "/2015-03-31/functions/fn?Qualifier=!!"),
    ("GET", "/2015-03-31/functions/arn:aws:lambda:eu-west-1:000000000000:function:fn"),
]


def test_no_server_error_for_any_bad_input(nimbus: NimbusProcess, lam) -> None:
    create(lam)
    lam.publish_version(FunctionName="fn")
    lam.create_alias(FunctionName="fn", Name="a", FunctionVersion="1")
    with httpx.Client(base_url=nimbus.endpoint) as http:
        for method, path in ROUTES:
            for body in JUNK:
                r = http.request(method, path, content=body)
                assert r.status_code < 500, (method, path, body, r.text)
                if r.status_code >= 400:
                    assert r.headers["x-amzn-errortype"].endswith("Exception"), r.text
                    payload = r.json()
                    assert payload.get("message") or payload.get("Message")


def test_json_nested_too_deeply_or_with_a_lone_surrogate_is_bad_input(
    nimbus: NimbusProcess,
) -> None:
    """Any Lambda API handler: a body json cannot hold as text, or nested past its decoder,
    is InvalidRequestContentException (400), never a server failure."""
    url = f"{nimbus.endpoint}/2015-03-31/functions"
    deep = httpx.post(url, content=b'{"a":' * 5000 + b"1" + b"}" * 5000)
    assert deep.status_code == 400
    assert deep.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "nested too deeply" in deep.json()["message"]
    lone = httpx.post(url, content=b'{"FunctionName": "f", "x": "\\ud800"}')
    assert lone.status_code == 400
    assert "lone surrogate" in lone.json()["message"]
