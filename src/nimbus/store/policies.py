"""Resource-based policies of functions in the metadata store (blocking; call off the loop).

One policy per (function, qualifier), where the qualifier is ``$LATEST`` (the unqualified
function), a published version or an alias, as on Lambda. A policy is the list of
statements AddPermission added, kept in that order; removing its last statement deletes
it (GetPolicy then finds none, as on Lambda). Deleting the function deletes its policies
(FK cascade); deleting an alias deletes the alias's (``AliasStore.delete``).

With api_auth = "sigv4", the control plane and AWS_IAM function URLs enforce them for
principals other than the admin (``nimbus.iam.decision``): a statement naming the caller's
user ARN (or ``*``) allows what identity policies do not; ``find`` is what they read.

Each policy has a ``revision_id``, new on every change; a write given an expected revision
is refused (PreconditionFailed) unless it is the current one. Lambda reports the function
version's or alias's RevisionId here and bumps it on policy changes; nimbus keeps the
policy's own, because warm and provisioned environments are keyed on a version's revision
and a permission change must not recycle them. Before a qualifier has a policy, the only
revision a client can hold is the version's or alias's, so that is what AddPermission
compares against then.

What does not exist is said in Lambda's words, which depend on the operation: GetPolicy
says ``The resource you requested does not exist.`` of a function, version, alias or
policy alike; AddPermission and RemovePermission say ``Cannot find alias arn: <ARN>`` of
an alias and ``Function not found: <ARN>`` of a version; of a function, AddPermission
says ``Function not found`` and RemovePermission ``No policy found for``.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sqlalchemy import Connection, select

from nimbus.errors import (
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from nimbus.models import LATEST, FunctionPolicy
from nimbus.store.functions import NO_ALIAS, FunctionStore
from nimbus.store.qualified import QualifiedSettings
from nimbus.store.schema import aliases, function_policies

# Lambda's quota on a function's resource-based policy (per function, version or alias).
POLICY_SIZE_LIMIT = 20 * 1024
NO_RESOURCE = "The resource you requested does not exist."
# A qualifier that can name an alias (the digits of a version are tried first).
_ALIAS_NAME = re.compile(r"[a-zA-Z0-9-_]+")


def policy_document(statements: list[dict[str, Any]]) -> str:
    """The policy as GetPolicy returns it: compact JSON, Lambda's Version and Id."""
    document = {"Version": "2012-10-17", "Id": "default", "Statement": statements}
    return json.dumps(document, separators=(",", ":"))


class PolicyStore(QualifiedSettings[FunctionPolicy]):
    """Add and remove statements of a (function, qualifier)'s policy; read the policy."""

    def __init__(self, functions: FunctionStore) -> None:
        super().__init__(functions, function_policies, FunctionPolicy)

    # -- reading -----------------------------------------------------------------------

    def get(self, function: str, qualifier: str) -> FunctionPolicy:
        """The policy, or ResourceNotFound: no function or qualifier, or no statements
        (Lambda answers them alike)."""
        with self.db.read() as conn:
            try:
                self.functions.record(conn, function)
                self._target_revision(conn, function, qualifier)
            except ResourceNotFound:
                raise ResourceNotFound(NO_RESOURCE) from None
            policy = self._find(conn, function, qualifier)
        if policy is None:
            raise ResourceNotFound(NO_RESOURCE)
        return policy

    # -- writing -----------------------------------------------------------------------

    def add(
        self,
        function: str,
        qualifier: str,
        statement: dict[str, Any],
        expected_revision: str | None = None,
    ) -> FunctionPolicy:
        """Append ``statement`` (its ``Sid`` new to this policy) and return the policy."""
        with self.functions.writing(function) as conn:
            self.functions.record(conn, function, lock=True)
            target_revision = self._target_revision(conn, function, qualifier)
            current = self._find(conn, function, qualifier)
            if current is None:
                check_policy_revision(expected_revision, target_revision, "GetFunction/GetAlias")
                statements = []
            else:
                check_policy_revision(expected_revision, current.revision_id, "GetPolicy")
                statements = current.statements
            statements = with_statement(statements, statement, "RemovePermission")
            policy = FunctionPolicy(function, qualifier, statements, str(uuid.uuid4()))
            self._save(conn, policy, exists=current is not None)
        return policy

    def remove(
        self, function: str, qualifier: str, sid: str, expected_revision: str | None = None
    ) -> FunctionPolicy | None:
        """Drop statement ``sid``; returns what is left (None: the policy is gone)."""
        with self.functions.writing(function) as conn:
            try:
                self.functions.record(conn, function, lock=True)
            except ResourceNotFound:
                arn = self.functions.arn(function)
                raise ResourceNotFound(f"No policy found for: {arn}") from None
            self._target_revision(conn, function, qualifier)
            current = self._find(conn, function, qualifier)
            if current is None:
                raise ResourceNotFound("No policy is associated with the given resource.")
            remaining = without_statement(current.statements, sid)
            check_policy_revision(expected_revision, current.revision_id, "GetPolicy")
            if not remaining:
                conn.execute(function_policies.delete().where(self._where(function, qualifier)))
                return None
            policy = FunctionPolicy(function, qualifier, remaining, str(uuid.uuid4()))
            self._save(conn, policy, exists=True)
        return policy

    # -- helpers -----------------------------------------------------------------------

    def _target_revision(self, conn: Connection, function: str, qualifier: str) -> str:
        """The RevisionId of what the qualifier names ($LATEST, a version or an alias),
        which must exist (the function is known to): else Lambda's words for it."""
        if qualifier == LATEST or qualifier.isdigit():
            return self.functions.version(conn, function, qualifier).revision_id
        row = conn.execute(
            select(aliases.c.revision_id).where(
                aliases.c.function_name == function, aliases.c.name == qualifier
            )
        ).first()
        if row is None and _ALIAS_NAME.fullmatch(qualifier):
            arn = self.functions.arn(function, qualifier)
            raise ResourceNotFound(f"{NO_ALIAS}: {arn}")
        if row is None:
            raise self.functions.not_found(function, qualifier)
        return str(row.revision_id)


def with_statement(
    statements: list[dict[str, Any]], statement: dict[str, Any], remover: str
) -> list[dict[str, Any]]:
    """``statements`` and ``statement`` after it: ResourceConflict if its Sid is taken,
    PolicyLengthExceeded past Lambda's size (``remover`` is the API that makes room)."""
    sid = statement["Sid"]
    if any(s.get("Sid") == sid for s in statements):
        raise ResourceConflict(
            f"The statement id ({sid}) provided already exists. Please provide a new "
            "statement id, or remove the existing statement."
        )
    appended = [*statements, statement]
    size = len(policy_document(appended).encode())
    if size > POLICY_SIZE_LIMIT:
        raise PolicyLengthExceeded(
            f"The final policy size ({size}) is bigger than the limit ({POLICY_SIZE_LIMIT}). "
            f"Remove statements with {remover} first."
        )
    return appended


def without_statement(statements: list[dict[str, Any]], sid: str) -> list[dict[str, Any]]:
    """``statements`` less statement ``sid``, which must be there (ResourceNotFound)."""
    remaining = [s for s in statements if s.get("Sid") != sid]
    if len(remaining) == len(statements):
        raise ResourceNotFound(f"Statement {sid} is not found in resource policy.")
    return remaining


def check_policy_revision(expected: str | None, actual: str | None, where: str) -> None:
    if expected is not None and expected != actual:
        raise PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the "
            f"{where} API to retrieve the latest Revision Id"
        )
