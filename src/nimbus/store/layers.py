"""Layers and their versions in the metadata store (blocking; call off the loop).

A layer version is an immutable zip in the code store plus metadata; its number is one
past the layer's last (``layers.last_version``), never reused after a deletion, as on
Lambda. A function keeps the content of the layer versions it was configured with
(``LayerRef``), so deleting a version only stops new functions from attaching it.
A version's policy (AddLayerVersionPermission) is kept with it, stored and reported but
not enforced, like a function's.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.errors import (
    InvalidParameterValue,
    ResourceNotFound,
)
from nimbus.models import LayerRef, LayerVersion, Page
from nimbus.store.database import Database
from nimbus.store.functions import decode_marker, encode_marker, marker_number
from nimbus.store.policies import check_policy_revision, with_statement, without_statement
from nimbus.store.schema import function_versions, layer_versions, layers

_COLUMNS = [c.name for c in layer_versions.columns]


def _row(row: Any) -> LayerVersion:
    return LayerVersion(**{c: row._mapping[c] for c in _COLUMNS})


class LayerStore:
    """Publish, read, list and delete layer versions; resolve what a function uses."""

    def __init__(self, db: Database, arn_prefix: str) -> None:
        self.db = db
        self.arn_prefix = arn_prefix  # arn:aws:lambda:REGION:ACCOUNT:layer:

    def layer_arn(self, name: str) -> str:
        return f"{self.arn_prefix}{name}"

    def version_arn(self, name: str, version: int) -> str:
        return f"{self.arn_prefix}{name}:{version}"

    # -- writing -----------------------------------------------------------------------

    def publish(self, draft: LayerVersion) -> LayerVersion:
        """Store ``draft`` as the layer's next version (its ``version`` is ignored)."""
        for attempt in range(3):
            try:
                return self._publish(draft)
            except IntegrityError:
                # Another publisher created the layer first (PostgreSQL: both saw no
                # row to lock); its row is there to lock now.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _publish(self, draft: LayerVersion) -> LayerVersion:
        with self.db.write() as conn:
            last = conn.execute(
                select(layers.c.last_version)
                .where(layers.c.name == draft.layer_name)
                .with_for_update()  # concurrent publishers of one layer take turns
            ).scalar()
            number = 1 if last is None else last + 1
            if last is None:
                conn.execute(insert(layers).values(name=draft.layer_name, last_version=1))
            else:
                conn.execute(
                    update(layers)
                    .where(layers.c.name == draft.layer_name)
                    .values(last_version=number)
                )
            published = dataclasses.replace(draft, version=number)
            conn.execute(insert(layer_versions).values(dataclasses.asdict(published)))
        return published

    def add_permission(
        self, name: str, version: int, statement: dict[str, Any], expected_revision: str | None
    ) -> str:
        """Add ``statement`` to the version's policy; returns the policy's new revision."""
        with self.db.write() as conn:
            found = self._existing(conn, name, version)
            check_policy_revision(
                expected_revision, found.policy_revision, "GetLayerVersionPolicy"
            )
            statements = with_statement(
                found.statements, statement, "RemoveLayerVersionPermission"
            )
            return self._save_policy(conn, found, statements)

    def remove_permission(
        self, name: str, version: int, sid: str, expected_revision: str | None
    ) -> None:
        with self.db.write() as conn:
            found = self._existing(conn, name, version)
            remaining = without_statement(found.statements, sid)
            check_policy_revision(
                expected_revision, found.policy_revision, "GetLayerVersionPolicy"
            )
            self._save_policy(conn, found, remaining)

    def _save_policy(
        self, conn: Connection, found: LayerVersion, statements: list[dict[str, Any]]
    ) -> str:
        revision = str(uuid.uuid4())
        conn.execute(
            update(layer_versions)
            .where(
                layer_versions.c.layer_name == found.layer_name,
                layer_versions.c.version == found.version,
            )
            .values(statements=statements, policy_revision=revision)
        )
        return revision

    def delete(self, name: str, version: int) -> None:
        """Delete one version (nothing to do if there is none, as on Lambda)."""
        with self.db.write() as conn:
            conn.execute(
                delete(layer_versions).where(
                    layer_versions.c.layer_name == name, layer_versions.c.version == version
                )
            )

    # -- reading -----------------------------------------------------------------------

    def get(self, name: str, version: int) -> LayerVersion:
        with self.db.read() as conn:
            return self._existing(conn, name, version)

    def _existing(self, conn: Connection, name: str, version: int) -> LayerVersion:
        found = self._find(conn, name, version)
        if found is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return found

    def _find(self, conn: Connection, name: str, version: int) -> LayerVersion | None:
        row = conn.execute(
            select(layer_versions).where(
                layer_versions.c.layer_name == name, layer_versions.c.version == version
            )
        ).first()
        return None if row is None else _row(row)

    def versions(
        self,
        name: str,
        marker: str | None,
        max_items: int,
        runtime: str | None = None,
        architecture: str | None = None,
    ) -> Page:
        """A layer's versions, newest first, that are compatible with ``runtime`` and
        ``architecture`` (when given)."""
        query = (
            select(layer_versions)
            .where(layer_versions.c.layer_name == name)
            .order_by(layer_versions.c.version.desc())
        )
        if marker:
            (before,) = decode_marker(marker, 1)
            query = query.where(layer_versions.c.version < marker_number(before))
        with self.db.read() as conn:
            rows = [_row(r) for r in conn.execute(query)]
        matching = [v for v in rows if _compatible(v, runtime, architecture)]
        items = matching[:max_items]
        more = len(matching) > max_items
        return Page(items, encode_marker(items[-1].version) if more else None)

    def latest(
        self,
        marker: str | None,
        max_items: int,
        runtime: str | None = None,
        architecture: str | None = None,
    ) -> Page:
        """Each layer with a compatible version, by name, with its newest such version."""
        query = select(layer_versions).order_by(
            layer_versions.c.layer_name, layer_versions.c.version.desc()
        )
        if marker:
            (after,) = decode_marker(marker, 1)
            query = query.where(layer_versions.c.layer_name > after)
        newest: dict[str, LayerVersion] = {}
        with self.db.read() as conn:
            for row in conn.execute(query):
                version = _row(row)
                if version.layer_name not in newest and _compatible(
                    version, runtime, architecture
                ):
                    newest[version.layer_name] = version
                    if len(newest) > max_items:
                        break
        items = list(newest.values())[:max_items]
        more = len(newest) > max_items
        return Page(items, encode_marker(items[-1].layer_name) if more else None)

    def resolve(self, arns: list[str]) -> list[LayerRef]:
        """The content of each layer version ARN a function is configured with."""
        refs = []
        with self.db.read() as conn:
            for arn in arns:
                name, version = self.parse_arn(arn)
                found = None if name is None else self._find(conn, name, version)
                if found is None:
                    raise InvalidParameterValue(f"Layer version {arn} does not exist.")
                refs.append(
                    LayerRef(arn, found.code_sha256, found.code_size, found.unzipped_size)
                )
        names = [arn.rsplit(":", 1)[0] for arn in arns]
        if len(set(names)) < len(names):
            raise InvalidParameterValue(
                "Two different versions of the same layer are not allowed. Give each layer "
                "once in Layers."
            )
        return refs

    def parse_arn(self, arn: str) -> tuple[str | None, int]:
        """(layer name, version) of one of this nimbus' layer version ARNs, else
        (None, 0): another region's or account's layer is not here."""
        prefix, _, version = arn.rpartition(":")
        if not prefix.startswith(self.arn_prefix) or not version.isdigit():
            return None, 0
        return prefix[len(self.arn_prefix) :], int(version)

    def code_references(self) -> set[str]:
        """Every zip a layer version or a function's layer holds on to."""
        with self.db.read() as conn:
            held = set(conn.execute(select(layer_versions.c.code_sha256).distinct()).scalars())
            for attached in conn.execute(select(function_versions.c.layers)).scalars():
                held.update(LayerRef.stored(x).code_sha256 for x in attached or [])
        held.discard("")
        return held

    def total_size(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.sum(layer_versions.c.code_size))).scalar() or 0)


def _compatible(version: LayerVersion, runtime: str | None, architecture: str | None) -> bool:
    # As on Lambda, a filter lists only the versions that declare what it asks for.
    if runtime is not None and runtime not in version.compatible_runtimes:
        return False
    return architecture is None or architecture in version.compatible_architectures
