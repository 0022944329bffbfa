"""Resource-based policies in the store, on every backend (SQLite and the local PostgreSQL)."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from nimbus.errors import (
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from nimbus.models import LATEST, Alias
from nimbus.store.database import Database
from nimbus.store.policies import POLICY_SIZE_LIMIT, PolicyStore, policy_document
from nimbus.store.schema import function_policies, metadata
from tests.store.conftest import Stores
from tests.store.records import arn


def statement(sid: str, resource: str = "r", **extra: object) -> dict[str, object]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": resource,
        **extra,
    }


def count(policies: PolicyStore) -> int:
    with policies.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(function_policies)).scalar())


def test_add_get_remove_keeps_order_and_revisions(stores_with_f: Stores) -> None:
    policies = stores_with_f.policies
    heard: list[str] = []
    policies.functions.on_change(heard.append)
    with pytest.raises(ResourceNotFound, match=r"^The resource you requested does not exist\.$"):
        policies.get("f", LATEST)

    # Condition keys and their order survive the round trip on both backends.
    first = statement("b", Condition={"StringEquals": {"Z": "1", "A": "2"}, "ArnLike": {"x": "y"}})
    one = policies.add("f", LATEST, first)
    assert heard == ["f"]
    two = policies.add("f", LATEST, statement("a"))
    assert one.revision_id != two.revision_id
    got = policies.get("f", LATEST)
    assert got == two and [s["Sid"] for s in got.statements] == ["b", "a"]
    assert json.dumps(got.statements[0]) == json.dumps(first)
    document = json.loads(policy_document(got.statements))
    assert document == {"Version": "2012-10-17", "Id": "default", "Statement": got.statements}

    with pytest.raises(ResourceConflict, match=r"The statement id \(a\) provided already exists"):
        policies.add("f", LATEST, statement("a"))
    with pytest.raises(ResourceNotFound, match=r"^Statement zz is not found in resource policy\.$"):
        policies.remove("f", LATEST, "zz")
    assert policies.get("f", LATEST) == two  # nothing changed

    left = policies.remove("f", LATEST, "b")
    assert left is not None and [s["Sid"] for s in left.statements] == ["a"]
    assert left.revision_id != two.revision_id
    assert policies.remove("f", LATEST, "a") is None
    assert count(policies) == 0
    with pytest.raises(ResourceNotFound, match="does not exist"):
        policies.get("f", LATEST)
    with pytest.raises(ResourceNotFound, match="No policy is associated"):
        policies.remove("f", LATEST, "a")


def test_revision_checks(stores_with_f: Stores) -> None:
    functions = stores_with_f.functions
    aliases = stores_with_f.aliases
    policies = stores_with_f.policies
    latest_rev = functions.get_version("f").revision_id
    alias_rev = aliases.get("f", "live").revision_id
    # No policy yet: the version's or alias's RevisionId is the one to send.
    with pytest.raises(PreconditionFailed, match="GetFunction/GetAlias"):
        policies.add("f", LATEST, statement("s"), expected_revision=alias_rev)
    assert count(policies) == 0
    first = policies.add("f", LATEST, statement("s"), expected_revision=latest_rev)
    policies.add("f", "live", statement("s"), expected_revision=alias_rev)
    # Then the policy's own.
    with pytest.raises(PreconditionFailed, match="GetPolicy"):
        policies.add("f", LATEST, statement("t"), expected_revision=latest_rev)
    second = policies.add("f", LATEST, statement("t"), expected_revision=first.revision_id)
    with pytest.raises(PreconditionFailed):
        policies.remove("f", LATEST, "s", expected_revision=first.revision_id)
    assert [s["Sid"] for s in policies.get("f", LATEST).statements] == ["s", "t"]
    policies.remove("f", LATEST, "s", expected_revision=second.revision_id)


def test_qualifiers_are_separate_and_must_exist(stores_with_f: Stores) -> None:
    policies = stores_with_f.policies
    for qualifier in (LATEST, "1", "live"):
        policies.add("f", qualifier, statement("same", arn("f", qualifier)))
    assert {policies.get("f", q).qualifier for q in (LATEST, "1", "live")} == {LATEST, "1", "live"}
    # Lambda's words for what is missing depend on the operation and on what is missing.
    nothing = r"^The resource you requested does not exist\.$"
    for qualifier, missing in (
        ("2", "Function not found"),
        ("nope", "Cannot find alias arn"),
        ("not-an-alias-$", "Function not found"),  # cannot name an alias
    ):
        said = rf"^{missing}: .*:function:f:{re.escape(qualifier)}$"
        with pytest.raises(ResourceNotFound, match=said):
            policies.add("f", qualifier, statement("x"))
        with pytest.raises(ResourceNotFound, match=said):
            policies.remove("f", qualifier, "x")
        with pytest.raises(ResourceNotFound, match=nothing):
            policies.get("f", qualifier)
    with pytest.raises(ResourceNotFound, match=r"^Function not found: .*:function:ghost$"):
        policies.add("ghost", LATEST, statement("x"))
    with pytest.raises(ResourceNotFound, match=r"^No policy found for: .*:function:ghost$"):
        policies.remove("ghost", LATEST, "x")
    with pytest.raises(ResourceNotFound, match=nothing):
        policies.get("ghost", LATEST)


def test_size_limit_stores_nothing(stores_with_f: Stores) -> None:
    policies = stores_with_f.policies
    policies.add("f", LATEST, statement("small"))
    before = policies.get("f", LATEST)
    huge = statement("huge", Condition={"ArnLike": {"AWS:SourceArn": "x" * POLICY_SIZE_LIMIT}})
    with pytest.raises(PolicyLengthExceeded, match=r"bigger than the limit \(20480\)"):
        policies.add("f", LATEST, huge)
    assert policies.get("f", LATEST) == before


def test_deleting_alias_or_function_deletes_policies(stores_with_f: Stores) -> None:
    functions = stores_with_f.functions
    aliases = stores_with_f.aliases
    policies = stores_with_f.policies
    for qualifier in (LATEST, "1", "live"):
        policies.add("f", qualifier, statement("s"))
    aliases.delete("f", "live")
    assert count(policies) == 2
    aliases.create(Alias("f", "live", "1", str(uuid.uuid4())))
    with pytest.raises(ResourceNotFound, match="does not exist"):
        policies.get("f", "live")  # a new alias of the same name starts without one
    functions.delete("f", None)
    assert count(policies) == 0


def test_migration_matches_schema(database_url: str) -> None:
    """The frozen migration creates the table schema.py describes."""
    db = Database(database_url)
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    ours = [d for d in diff if "function_policies" in repr(d)]
    assert ours == []
    inspector = sa.inspect(db.engine)
    columns = {c["name"] for c in inspector.get_columns("function_policies")}
    assert columns == {"function_name", "qualifier", "statements", "revision_id"}
    (fk,) = inspector.get_foreign_keys("function_policies")
    assert fk["referred_table"] == "functions" and fk["options"].get("ondelete") == "CASCADE"
    db.dispose()
