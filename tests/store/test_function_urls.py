"""Function URL configs in the store, on every backend (SQLite and the local PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from nimbus.errors import ResourceConflict, ResourceNotFound
from nimbus.models import LATEST, Alias
from nimbus.store.database import Database
from nimbus.store.function_urls import is_url_id, new_url_id
from tests.store.conftest import Stores
from tests.store.records import NOW

LATER = "2026-01-02T00:00:00.000+0000"




def test_url_ids() -> None:
    ids = {new_url_id() for _ in range(200)}
    assert len(ids) == 200 and all(is_url_id(i) for i in ids)
    assert not is_url_id("A" * 32) and not is_url_id("a" * 31) and not is_url_id("a" * 33)


def test_create_get_update_delete(stores_with_f: Stores) -> None:
    urls = stores_with_f.urls
    heard: list[str] = []
    urls.on_change(heard.append)
    cors = {"AllowOrigins": ["*"], "MaxAge": 10}
    created = urls.create("f", LATEST, "NONE", cors, "BUFFERED", NOW)
    assert heard == ["f"]
    assert is_url_id(created.url_id) and created.creation_time == created.last_modified == NOW
    assert urls.get("f", LATEST) == created
    assert urls.get_by_url_id(created.url_id) == created
    assert urls.get_by_url_id(new_url_id()) is None
    assert urls.get_by_url_id("not-an-id") is None

    with pytest.raises(
        ResourceConflict,
        match=r"^Failed to create function url config for \[functionArn = .*:function:f\]\. "
        r"Error message:  FunctionUrlConfig exists for this Lambda function$",
    ):
        urls.create("f", LATEST, "AWS_IAM", None, "BUFFERED", NOW)

    updated = urls.update("f", LATEST, {"auth_type": "AWS_IAM"}, LATER)
    assert updated.auth_type == "AWS_IAM" and updated.cors == cors
    assert updated.url_id == created.url_id and updated.creation_time == NOW
    assert updated.last_modified == LATER
    cleared = urls.update("f", LATEST, {"cors": None}, LATER)
    assert cleared.cors is None and urls.get("f", LATEST).cors is None
    with pytest.raises(ValueError):
        urls.update("f", LATEST, {"url_id": "x"}, LATER)

    urls.delete("f", LATEST)
    assert urls.get_by_url_id(created.url_id) is None
    nothing = r"^The resource you requested does not exist\.$"
    with pytest.raises(ResourceNotFound, match=nothing):
        urls.get("f", LATEST)
    with pytest.raises(ResourceNotFound, match=nothing):
        urls.delete("f", LATEST)
    with pytest.raises(ResourceNotFound, match=nothing):
        urls.update("f", LATEST, {}, LATER)


def test_qualifiers_and_missing_things(stores_with_f: Stores) -> None:
    urls = stores_with_f.urls
    on_alias = urls.create("f", "live", "NONE", None, "BUFFERED", NOW)
    on_latest = urls.create("f", LATEST, "NONE", None, "BUFFERED", NOW)
    assert on_alias.url_id != on_latest.url_id
    # Lambda's words: Create, Update and List say the function (or alias) does not exist,
    # Get and Delete that the resource does not.
    no_function = r"^Function does not exist$"
    nothing = r"^The resource you requested does not exist\.$"
    for function, qualifier in (("f", "nope"), ("ghost", LATEST)):
        with pytest.raises(ResourceNotFound, match=no_function):
            urls.create(function, qualifier, "NONE", None, "BUFFERED", NOW)
        with pytest.raises(ResourceNotFound, match=no_function):
            urls.update(function, qualifier, {}, LATER)
        with pytest.raises(ResourceNotFound, match=nothing):
            urls.get(function, qualifier)
        with pytest.raises(ResourceNotFound, match=nothing):
            urls.delete(function, qualifier)
    with pytest.raises(ResourceNotFound, match=no_function):
        urls.list("ghost", None, 10)


def test_list_pages(stores_with_f: Stores) -> None:
    aliases, urls = stores_with_f.aliases, stores_with_f.urls
    names = [f"a{i}" for i in range(5)]
    for name in names:
        aliases.create(Alias("f", name, "1", str(uuid.uuid4())))
        urls.create("f", name, "NONE", None, "BUFFERED", NOW)
    urls.create("f", LATEST, "NONE", None, "BUFFERED", NOW)
    seen, marker = [], None
    while True:
        page = urls.list("f", marker, 2)
        assert len(page.items) <= 2
        seen += [c.qualifier for c in page.items]
        marker = page.next_marker
        if marker is None:
            break
    assert seen == [LATEST, *names]


def test_deleting_alias_or_function_deletes_urls(stores_with_f: Stores) -> None:
    functions, aliases, urls = stores_with_f.functions, stores_with_f.aliases, stores_with_f.urls
    on_alias = urls.create("f", "live", "NONE", None, "BUFFERED", NOW)
    on_latest = urls.create("f", LATEST, "NONE", None, "BUFFERED", NOW)
    heard: list[str] = []
    urls.on_change(heard.append)
    aliases.delete("f", "live")
    assert heard == ["f"]
    assert urls.get_by_url_id(on_alias.url_id) is None
    assert urls.get_by_url_id(on_latest.url_id) == on_latest
    functions.delete("f", None)
    assert urls.get_by_url_id(on_latest.url_id) is None
    with urls.db.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM function_urls")).scalar_one() == 0


def test_migration_matches_schema(database_url: str) -> None:
    """The frozen migration creates the same table and unique index as schema.py."""
    db = Database(database_url)
    db.migrate()
    inspector = sa.inspect(db.engine)
    columns = {c["name"] for c in inspector.get_columns("function_urls")}
    assert columns == {
        "function_name",
        "qualifier",
        "url_id",
        "auth_type",
        "cors",
        "invoke_mode",
        "creation_time",
        "last_modified",
    }
    indexes = {i["name"]: i for i in inspector.get_indexes("function_urls")}
    assert indexes["ux_function_urls_url_id"]["unique"]
    db.dispose()
