"""What every deployable resource type (a *kind*) provides, and the registry of them.

A kind names the CloudFormation properties it supports (any other is a problem with its
line), checks literal values before anything is deployed, and creates, updates and deletes
its resource through boto3. ``Made`` is what a resource answers to ``Ref`` and
``Fn::GetAtt``; the state file keeps it, so a later deploy resolves references to
resources it does not touch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Console

from nimbus.deploy.package import Package


@dataclass
class Made:
    """A deployed resource: its physical id (Ref) and attributes (GetAtt)."""

    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)  # what the user calls (printed at the end)


@dataclass
class Context:
    """What kinds need to deploy: boto3 clients to the nimbus, the stack and its code."""

    session: Any  # boto3.session.Session
    endpoint: str
    stack: str
    region: str
    account: str
    packages: dict[str, Package]
    console: Console
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            self._clients[service] = self.session.client(
                service, endpoint_url=self.endpoint, region_name=self.region,
                config=Config(retries={"max_attempts": 1}, read_timeout=960),
            )  # fmt: skip
        return self._clients[service]

    def name(self, logical_id: str, limit: int = 64, suffix: str = "") -> str:
        """A physical name as CloudFormation makes one: stack-LogicalId."""
        return f"{self.stack}-{logical_id}"[: limit - len(suffix)] + suffix

    def note(self, message: str) -> None:
        self.console.print(f"[dim]note:[/dim] {message}", highlight=False, soft_wrap=True)


class Kept(Exception):
    """A delete that leaves the resource in place on purpose (a bucket that still holds
    objects): the stack forgets it and says so, with what to do (the message)."""


class Kind:
    """One CloudFormation resource type nimbus deploys."""

    type_name: ClassVar[str]
    properties: ClassVar[frozenset[str]]
    required: ClassVar[frozenset[str]] = frozenset()
    # Properties whose change makes a new resource (the old one is deleted), as CloudFormation.
    replace_on: ClassVar[frozenset[str]] = frozenset()
    # Starts invocations by itself once made (a schedule, a poller): applied after every
    # resource it does not depend on, so a function's destinations, retries and aliases
    # are in place before its first event (a rate schedule fires at once).
    starts_events: ClassVar[bool] = False

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        """(property, message) for values nimbus refuses; intrinsics are not resolved yet."""
        return []

    def identity(self, ctx: Context, props: dict[str, Any]) -> dict[str, Any]:
        """The resolved properties as compared between deploys (code by its hash)."""
        return props

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        raise NotImplementedError

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        """Apply changed ``props`` in place (replacement is decided by ``replace_on``)."""
        raise NotImplementedError

    def delete(self, ctx: Context, made: Made) -> None:
        raise NotImplementedError

    def describe(self, made: Made) -> str:
        return made.physical_id


KINDS: dict[str, Kind] = {}


def register(kind: type[Kind]) -> type[Kind]:
    KINDS[kind.type_name] = kind()
    return kind


def tags_dict(value: Any) -> dict[str, str]:
    """CloudFormation tags ([{Key, Value}] or a map) as a map."""
    if isinstance(value, list):
        return {str(t["Key"]): str(t["Value"]) for t in value}
    return {str(k): str(v) for k, v in (value or {}).items()}


def ignore_missing(call: Any, **kwargs: Any) -> None:
    """Delete something that may already be gone (deleted by hand, or with its parent)."""
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if "NotFound" not in code and code not in ("AWS.SimpleQueueService.NonExistentQueue",):
            raise
