"""What fuzzing found, pinned: each request that once got a 5xx, now refused with the
4xx botocore reads. (The fuzz runs find such requests by chance; these send them always.)
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import HELLO, ROLE, live_server


@pytest.fixture(scope="module")
def lam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with live_server(tmp_path_factory.mktemp("findings") / "data") as server:
        client = server.client(validate=False)
        client.create_function(
            FunctionName="found",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": HELLO},
            Publish=True,
        )
        client.publish_layer_version(LayerName="found", Content={"ZipFile": HELLO})
        yield client


def marker(*parts: str) -> str:
    """A Marker shaped as nimbus's own (base64 of parts), holding what nimbus never issues."""
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


# Non-ASCII digits pass str.isdigit() but not int(); 30 digits overflow a SQL integer.
BAD_NUMBERS = ["\u00b2", "9" * 30]


# Each listing whose marker holds a number: its call, its other arguments, and its marker
# around a number (the function listing's is "name, version", the mappings' "time, uuid").
LISTINGS = {
    "list_versions_by_function": ({"FunctionName": "found"}, lambda n: marker(n)),
    "list_functions": ({"FunctionVersion": "ALL"}, lambda n: marker("found", n)),
    "list_layer_versions": ({"LayerName": "found"}, lambda n: marker(n)),
    "list_event_source_mappings": ({}, lambda n: marker(n, "uuid")),
}


@pytest.mark.parametrize("number", BAD_NUMBERS)
@pytest.mark.parametrize("call", LISTINGS)
def test_a_marker_nimbus_never_issued_is_refused(lam: Any, call: str, number: str) -> None:
    kwargs, make = LISTINGS[call]
    with pytest.raises(ClientError) as exc:
        getattr(lam, call)(Marker=make(number), **kwargs)
    error = exc.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400, error
    assert error["Error"]["Code"] == "InvalidParameterValueException", error
    assert "Marker" in error["Error"]["Message"]


def test_a_marker_that_is_not_base64_is_refused(lam: Any) -> None:
    # base64 decoding skips what is not of its alphabet: "Ç" decoded to an empty number.
    with pytest.raises(ClientError) as exc:
        lam.list_versions_by_function(FunctionName="found", Marker="\u00c7")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_markers_nimbus_issues_still_page(lam: Any) -> None:
    lam.publish_version(FunctionName="found", Description="again")  # same code: version 1
    first = lam.list_versions_by_function(FunctionName="found", MaxItems=1)
    assert first["Versions"][0]["Version"] == "$LATEST"
    rest = lam.list_versions_by_function(FunctionName="found", Marker=first["NextMarker"])
    assert [v["Version"] for v in rest["Versions"]] == ["1"]
