"""SigV4: requests signed by botocore verify; tampering, skew, wrong keys and scopes do not;
our signer produces what botocore computes. Also the key pair's storage."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import botocore.auth
import httpx
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from nimbus.config import Config, ConfigError
from nimbus.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)
from nimbus.sigv4 import signing
from nimbus.sigv4 import verification as sigv4
from nimbus.sigv4.credentials import (
    FILE_NAME,
    Credentials,
    client_credentials,
    load_credentials,
)

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = Credentials(KEY, SECRET, "123456789012")
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
T = NOW.timestamp()
BASE = "http://127.0.0.1:9000"


@pytest.fixture(autouse=True)
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))


def boto_sign(
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    params: dict[str, str] | None = None,
    presign: int | None = None,
    secret: str = SECRET,
    key: str = KEY,
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "lambda",
    unsigned_payload: bool = False,
) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    """Sign with botocore; return what the server receives: method, path, query, headers, body."""
    request = AWSRequest(method, url, data=body, headers=headers or {}, params=params or {})
    if unsigned_payload:
        request.context["payload_signing_enabled"] = False
        request.url = request.url.replace("http://", "https://")
    creds = BotoCredentials(key, secret, token)
    if presign is not None:
        SigV4QueryAuth(creds, service, region, expires=presign).add_auth(request)
    else:
        SigV4Auth(creds, service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    sent = [("Host", parts.netloc), *prepared.headers.items()]
    return prepared.method, parts.path, parts.query, sent, prepared.body or b""


def check(signed: tuple[str, str, str, list[tuple[str, str]], bytes], **kw: object) -> sigv4.Caller:
    method, path, query, headers, body = signed
    options: dict[str, object] = {"region": "us-east-1", "service": "lambda", "now": T, **kw}
    return sigv4.verify(method, path, query, headers, body, CREDS, **options)


def test_get_and_post_verify() -> None:
    caller = check(boto_sign("GET", f"{BASE}/2015-03-31/functions/"))
    assert caller == sigv4.Caller(
        KEY, "123456789012", "arn:aws:iam::123456789012:root", "123456789012"
    )
    body = json.dumps({"FunctionName": "f", "Payload": "ü"}).encode()
    check(
        boto_sign(
            "POST", f"{BASE}/2015-03-31/functions", body, {"Content-Type": "application/json"}
        )
    )


def test_caller_is_the_function_url_iam_block() -> None:
    assert check(boto_sign("GET", f"{BASE}/x")).iam_authorizer() == {
        "accessKey": KEY,
        "accountId": "123456789012",
        "callerId": "123456789012",
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": "arn:aws:iam::123456789012:root",
        "userId": "123456789012",
    }


@pytest.mark.parametrize(
    "query",
    [
        "b=2&a=3&a=1&a=2",  # repeated keys: sorted by name, then value
        "Qualifier=%24LATEST&Marker=a%2Fb%3Dc&MaxItems=10",  # as botocore's serializer encodes
        "k=a%20b%2Bc%7E%C3%BC&empty=&flag",  # space, plus, tilde, unicode, blank, bare name
        "x=a b+c:/&y=ü",  # written by hand, unencoded: botocore signs it as written
    ],
)
def test_query_strings(query: str) -> None:
    check(boto_sign("GET", f"{BASE}/2015-03-31/functions/?{query}"))


def test_query_params_sent_form_encoded() -> None:
    # AWSRequest(params=...) signs RFC 3986 (%20) but sends urlencoded (+ for space).
    signed = boto_sign("GET", f"{BASE}/x", params={"k": "a b+c/~ü", "a": "1", "z": ""})
    assert "+" in signed[2]
    check(signed)


@pytest.mark.parametrize(
    "path",
    [
        "/2015-03-31/functions/my%20function/invocations",  # space
        "/2015-03-31/functions/%C3%BCn%C3%AFc%C3%B8de/configuration",  # unicode
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/x",
        "/lambda-url/abc/a%2Fb/100%25/%7Euser/",  # encoded slash, percent, tilde; trailing /
        "/lambda-url/abc/./a//b/../c",  # dot segments and empty segments are normalised
        "/",
    ],
)
def test_paths(path: str) -> None:
    check(boto_sign("GET", f"{BASE}{path}"))


def test_presigned_url() -> None:
    signed = boto_sign("GET", f"{BASE}/lambda-url/abc/x?a=1&b=two%20words", presign=60)
    assert "X-Amz-Signature=" in signed[2] and not any(n == "Authorization" for n, _ in signed[3])
    check(signed)
    check(signed, now=T + 59)
    with pytest.raises(InvalidSignature, match="Signature expired: the presigned request"):
        check(signed, now=T + 61)
    with pytest.raises(InvalidSignature, match="not yet current"):
        check(signed, now=T - 400)


def test_presigned_tampered_query() -> None:
    method, path, query, headers, body = boto_sign("GET", f"{BASE}/x?a=1", presign=60)
    with pytest.raises(InvalidSignature, match="does not match"):
        check((method, path, query.replace("a=1", "a=2"), headers, body))
    longer = query.replace("X-Amz-Expires=60", "X-Amz-Expires=6000")
    with pytest.raises(InvalidSignature, match="does not match"):
        check((method, path, longer, headers, body), now=T + 120)


def test_clock_skew() -> None:
    signed = boto_sign("GET", f"{BASE}/x")
    check(signed, now=T + 290)
    check(signed, now=T - 290)
    with pytest.raises(InvalidSignature) as old:
        check(signed, now=T + 301)
    assert old.value.status == 403
    assert str(old.value) == (
        "Signature expired: 20240506T070809Z is now earlier than 20240506T070810Z "
        "(20240506T071310Z - 5 min.)"
    )
    with pytest.raises(InvalidSignature, match="Signature not yet current: 20240506T070809Z"):
        check(signed, now=T - 301)


def test_wrong_secret() -> None:
    with pytest.raises(InvalidSignature) as caught:
        check(boto_sign("GET", f"{BASE}/x", secret="not-the-secret"))
    assert caught.value.type_name == "InvalidSignatureException"
    assert str(caught.value).startswith("The request signature we calculated does not match")


def test_unknown_key() -> None:
    with pytest.raises(UnrecognizedClient) as caught:
        check(boto_sign("GET", f"{BASE}/x", key="AKIAOTHER"))
    assert caught.value.type_name == "UnrecognizedClientException" and caught.value.status == 403
    assert str(caught.value) == "The security token included in the request is invalid."


def test_wrong_region_and_service() -> None:
    with pytest.raises(InvalidSignature) as region:
        check(boto_sign("GET", f"{BASE}/x", region="eu-west-1"))
    assert "not 'eu-west-1'" in str(region.value) and "'us-east-1'" in str(region.value)
    with pytest.raises(InvalidSignature, match="correct service: 'lambda', not 's3'"):
        check(boto_sign("GET", f"{BASE}/x", service="s3"))
    check(boto_sign("GET", f"{BASE}/x", region="eu-west-1"), region="eu-west-1")


def test_unsigned() -> None:
    with pytest.raises(MissingAuthenticationToken) as caught:
        sigv4.verify(
            "GET", "/x", "", [("Host", "h")], b"", CREDS, region="us-east-1", service="lambda"
        )
    assert caught.value.type_name == "MissingAuthenticationTokenException"
    assert caught.value.body()["message"] == "Missing Authentication Token"


def test_tampering() -> None:
    method, path, query, headers, body = boto_sign(
        "POST", f"{BASE}/x?a=1", b'{"a": 1}', {"Content-Type": "application/json", "X-Amz-Tag": "v"}
    )
    check((method, path, query, headers, body))
    tampered_headers = [(n, "v2" if n == "X-Amz-Tag" else v) for n, v in headers]
    for variant in (
        ("PUT", path, query, headers, body),
        (method, "/y", query, headers, body),
        (method, path, "a=2", headers, body),
        (method, path, query, tampered_headers, body),
        (method, path, query, [*headers, ("X-Amz-Tag", "again")], body),
        (method, path, query, [(n, "h2:1" if n == "Host" else v) for n, v in headers], body),
        (method, path, query, headers, b'{"a": 2}'),
    ):
        with pytest.raises(InvalidSignature, match="does not match"):
            check(variant)


def test_header_values_are_trimmed_and_joined() -> None:
    signed = boto_sign("GET", f"{BASE}/x", headers={"X-Amz-Meta": "  a   b  "})
    check(signed)


def test_content_sha256_header() -> None:
    unsigned = boto_sign("POST", f"{BASE}/x", b"payload", unsigned_payload=True)
    assert ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD") in unsigned[3]
    check(unsigned)
    check((*unsigned[:4], b"any other body"))  # UNSIGNED-PAYLOAD: the body is not covered

    method, path, query, headers, _ = boto_sign("POST", f"{BASE}/x", b"payload")
    declared = [*headers, ("X-Amz-Content-SHA256", sigv4.hashlib.sha256(b"payload").hexdigest())]
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        check((method, path, query, declared, b"other"))


def test_date_header_and_security_token() -> None:
    signed = boto_sign("GET", f"{BASE}/x", headers={"Date": "whatever"})
    assert not any(n.lower() == "x-amz-date" for n, _ in signed[3])
    check(signed)
    with_token = boto_sign("GET", f"{BASE}/x", token="session-token")
    assert any(n == "X-Amz-Security-Token" for n, _ in with_token[3])
    check(with_token)


def test_scope_date_must_match() -> None:
    method, path, query, headers, body = boto_sign("GET", f"{BASE}/x")
    moved = [(n, v.replace("/20240506/", "/20240505/")) for n, v in headers]
    with pytest.raises(InvalidSignature, match="Date in Credential scope does not match"):
        check((method, path, query, moved, body))


def test_malformed_authorization() -> None:
    def verify(authorization: str, extra: list[tuple[str, str]] | None = None) -> None:
        headers = [("Host", "h"), ("X-Amz-Date", "20240506T070809Z"), *(extra or [])]
        headers.append(("Authorization", authorization))
        sigv4.verify(
            "GET", "/", "", headers, b"", CREDS, region="us-east-1", service="lambda", now=T
        )

    with pytest.raises(IncompleteSignature, match="Unsupported Authorization scheme 'Bearer'"):
        verify("Bearer abc")
    with pytest.raises(IncompleteSignature, match="requires 'Signature' parameter"):
        verify(
            f"AWS4-HMAC-SHA256 Credential={KEY}/20240506/us-east-1/lambda/aws4_request, "
            "SignedHeaders=host"
        )
    with pytest.raises(IncompleteSignature, match="missing equal-sign"):
        verify(f"AWS4-HMAC-SHA256 Credential={KEY} /20240506/us-east-1/lambda/aws4_request, x")
    with pytest.raises(IncompleteSignature, match="is not of the form"):
        verify(f"AWS4-HMAC-SHA256 Credential={KEY}/20240506, SignedHeaders=host, Signature=ab")
    with pytest.raises(
        IncompleteSignature, match="'Host' or ':authority' must be a 'SignedHeader'"
    ):
        verify(
            f"AWS4-HMAC-SHA256 Credential={KEY}/20240506/us-east-1/lambda/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=ab"
        )
    method, path, query, headers, body = boto_sign("GET", f"{BASE}/x")
    undated = [(n, v) for n, v in headers if n != "X-Amz-Date"]
    with pytest.raises(IncompleteSignature, match="either a 'X-Amz-Date' or a 'Date' header"):
        check((method, path, query, undated, body))
    both = boto_sign("GET", f"{BASE}/x", presign=60)
    with pytest.raises(IncompleteSignature, match="Only one auth mechanism"):
        check((*both[:3], [*both[3], ("Authorization", headers[-1][1])], b""))


def test_our_signer_matches_botocore() -> None:
    path, query = "/2015-03-31/functions/a%20b%3Ac/invocations", "Qualifier=%24LATEST&b=2&a=1"
    body = b'{"k": "v"}'
    ours = dict(
        signing.sign(
            "POST",
            path,
            query,
            [("Host", "127.0.0.1:9000"), ("Content-Type", "application/json")],
            body,
            CREDS,
            region="us-east-1",
            service="lambda",
            now=T,
        )
    )
    theirs = AWSRequest(
        "POST",
        f"{BASE}{path}?{query}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(BotoCredentials(KEY, SECRET), "lambda", "us-east-1").add_auth(theirs)
    assert ours["X-Amz-Date"] == theirs.headers["X-Amz-Date"]
    assert ours["Authorization"] == theirs.headers["Authorization"]


def test_our_presign_verifies() -> None:
    query = signing.presign(
        "GET", "/lambda-url/abc/p", "a=1", [("Host", "h:1")], CREDS,
        region="us-east-1", service="lambda", expires=30, now=T,
    )  # fmt: skip
    check(("GET", "/lambda-url/abc/p", query, [("Host", "h:1")], b""))
    with pytest.raises(InvalidSignature, match="expired"):
        check(("GET", "/lambda-url/abc/p", query, [("Host", "h:1")], b""), now=T + 31)


def test_httpx_auth_round_trip() -> None:
    auth = signing.httpx_auth(CREDS, region="us-east-1")
    request = httpx.Request(
        "POST",
        f"{BASE}/2015-03-31/functions/ü b/invocations",
        params={"Qualifier": "a b+c:/~ü", "x": ["2", "1"]},
        content=b"{}",
    )
    signed = auth(request)
    path, _, query = signed.url.raw_path.partition(b"?")
    caller = sigv4.verify(
        "POST", path, query, signed.headers.multi_items(), b"{}", CREDS,
        region="us-east-1", service="lambda",
    )  # fmt: skip
    assert caller.access_key == KEY


# ---------------------------------------------------------------- credentials storage


def test_generated_once_per_data_dir(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path / "data", account_id="111122223333")
    first = load_credentials(config)
    file = tmp_path / "data" / FILE_NAME
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert first.access_key_id.startswith("AKIA") and len(first.access_key_id) == 20
    assert len(first.secret_access_key) == 40 and first.account_id == "111122223333"
    assert load_credentials(config) == first
    assert SECRET not in repr(first) and first.secret_access_key not in repr(first)
    assert [p.name for p in file.parent.iterdir()] == [FILE_NAME]  # no temp file left


def test_configured_keys_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(data_dir=tmp_path, access_key_id="AKIAME", secret_access_key="s3cret")
    assert load_credentials(config) == Credentials("AKIAME", "s3cret", "000000000000")
    assert not (tmp_path / FILE_NAME).exists()
    assert "s3cret" not in repr(config)
    with pytest.raises(ValueError, match="set both access_key_id and secret_access_key"):
        Config(access_key_id="AKIAME")


def test_damaged_file(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="delete it to generate a new pair"):
        load_credentials(Config(data_dir=tmp_path))


def test_client_credentials_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    empty = Config(data_dir=tmp_path / "none")
    assert client_credentials(empty) is None
    assert not (tmp_path / "none").exists()  # a client never creates keys
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert client_credentials(empty) == Credentials("AKIAENV", "env-secret")
    stored = load_credentials(Config(data_dir=tmp_path / "d"))
    assert client_credentials(Config(data_dir=tmp_path / "d")) == stored
    configured = Config(data_dir=tmp_path / "d", access_key_id="AKIACFG", secret_access_key="x")
    assert client_credentials(configured) == Credentials("AKIACFG", "x")


def test_concurrent_creation_agrees(tmp_path: Path) -> None:
    """Processes racing to create the file all end up with the first one's pair."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        pairs = pool.map(_load_pair, [str(tmp_path)] * 8)
    assert len(set(pairs)) == 1
    assert json.loads((tmp_path / FILE_NAME).read_text())["AccessKeyId"] == pairs[0][0]
    assert os.listdir(tmp_path) == [FILE_NAME]


def _load_pair(data_dir: str) -> tuple[str, str]:
    found = load_credentials(Config(data_dir=Path(data_dir)))
    return found.access_key_id, found.secret_access_key
