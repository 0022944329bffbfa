"""Deploying a stack: validate everything, then apply only what changed, in dependency order.

1. Parameters, the SAM transform and every resource, property and intrinsic are checked
   first; all problems are reported together (``TemplateInvalid``) and nothing is deployed.
2. Resources are applied in dependency order (Ref / GetAtt / Sub / DependsOn), the
   template's order otherwise, except that what starts events by itself (schedules,
   rules, event source mappings), and what depends on it, comes after the rest: a function's
   destinations and retries are in place before its first event. Each one's intrinsics
   are resolved against what was applied before it. A resource whose resolved
   properties (code by its SHA-256) are those last applied is left alone; otherwise it is
   updated in place, or replaced when a property that names it changed.
3. Resources gone from the template (or whose Condition is false) are deleted, dependents
   (and event starters) first. ``remove`` deletes everything the state lists."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.deploy import (
    api_kinds,
    iam_kinds,
    lambda_kinds,
    rest_api_kinds,
    s3_kinds,
    schedule_kinds,
    sns_kinds,
    sqs_kinds,
)
from nimbus.deploy import state as states
from nimbus.deploy.intrinsics import (
    PSEUDO,
    SUPPORTED,
    Resolver,
    Unresolved,
    check,
    is_intrinsic,
    references,
)
from nimbus.deploy.kinds import KINDS, Context, Kept, Made
from nimbus.deploy.package import Package, build
from nimbus.deploy.problems import DeployError, Problem, TemplateInvalid
from nimbus.deploy.sam import expand, origin
from nimbus.deploy.template import LocatedDict, Template

# They register kinds.
_ = (api_kinds, iam_kinds, lambda_kinds, rest_api_kinds, schedule_kinds, s3_kinds, sns_kinds,
     sqs_kinds)
_RESOURCE_KEYS = frozenset({"Type", "Properties", "DependsOn", "Condition", "DeletionPolicy",
                            "UpdateReplacePolicy", "Metadata"})  # fmt: skip
_TOP_KEYS = frozenset(
    {
        "AWSTemplateFormatVersion",
        "Transform",
        "Description",
        "Parameters",
        "Conditions",
        "Resources",
        "Outputs",
        "Globals",
        "Metadata",
        "Mappings",
    }
)
_API_TYPES = frozenset({"AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"})
_EXECUTE_API = re.compile(r"https://([a-z0-9]+)\.execute-api\.[^/]+\.amazonaws\.com")


@dataclass
class Change:
    logical_id: str
    type: str
    action: str  # created, updated, replaced, unchanged, deleted, kept, retained, skipped
    physical_id: str


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def _parameters(template: Template, given: dict[str, str]) -> tuple[dict[str, Any], list[Problem]]:
    declared = template.body.get("Parameters") or {}
    problems = [Problem("Parameters", None, f"--param {k}: the template has no parameter {k}")
                for k in given if k not in declared]  # fmt: skip
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        line = template.line("Parameters", name)
        spec = spec if isinstance(spec, dict) else {}
        value = given.get(name, spec.get("Default"))
        if value is None:
            problems.append(Problem(name, line, f"parameter {name} has no Default: pass "
                                    f"--param {name}=VALUE"))  # fmt: skip
            continue
        value = str(value)
        allowed = spec.get("AllowedValues")
        if allowed and value not in [str(a) for a in allowed]:
            problems.append(Problem(name, line, f"parameter {name}={value!r} is not one of "
                                    f"{', '.join(map(str, allowed))}"))  # fmt: skip
        kind = str(spec.get("Type", "String"))
        values[name] = [v.strip() for v in value.split(",")] if (
            kind == "CommaDelimitedList" or kind.startswith("List<")
        ) else value  # fmt: skip
    return values, problems


def _walk_intrinsics(value: Any, line: int | None) -> Iterable[tuple[int | None, Any]]:
    """Every mapping of the user's template with the nearest line it has."""
    if isinstance(value, dict):
        here = value.line if isinstance(value, LocatedDict) else line
        yield here, value
        for v in value.values():
            yield from _walk_intrinsics(v, here)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_intrinsics(v, getattr(value, "line", line))


class Deployer:
    """One deploy (or removal) of one stack to one nimbus."""

    def __init__(self, template: Template | None, ctx: Context, state_path: Path) -> None:
        self.template = template
        self.ctx = ctx
        self.state_path = state_path
        self.state = states.load(state_path, ctx.stack, ctx.endpoint)
        if self.state.endpoint != ctx.endpoint and self.state.resources:
            raise DeployError(
                f"stack {ctx.stack} was deployed to {self.state.endpoint}, not "
                f"{ctx.endpoint}: deploy it there, or give another --stack name"
            )

    # -- validation -----------------------------------------------------------------------

    def _line(self, lid: str, prop: str | None = None) -> int | None:
        assert self.template is not None
        source = origin(self.template, lid)
        keys = ["Resources", source] + (["Properties", prop] if prop else [])
        return self.template.line(*keys)

    def prepare(
        self, given: dict[str, str], builder: Callable[[Path, str | None], Package] | None = None
    ) -> tuple[dict[str, Any], Any]:
        """The parameters and the expanded template, or every problem at once."""
        assert self.template is not None
        template = self.template
        problems = [Problem(k, template.line(k), f"top-level section {k} is not supported")
                    for k in template.body if k not in _TOP_KEYS]  # fmt: skip
        parameters, found = _parameters(template, given)
        problems += found
        for line, node in _walk_intrinsics(template.body, template.body.line):
            name = is_intrinsic(node)
            if name is not None and name not in SUPPORTED:
                problems.append(Problem(self._where(line), line, (
                    f"intrinsic function {name} is not supported by nimbus deploy (supported: "
                    f"{', '.join(sorted(SUPPORTED))})"
                )))  # fmt: skip
        cache = self.state_path.parent.parent / "build"
        build_one = builder or (
            lambda folder, runtime: build(folder, runtime, cache, self.ctx.console)
        )
        pseudo = self._pseudo()
        expanded = expand(template, {**pseudo, **{k: v if isinstance(v, str) else ",".join(v)
                                                 for k, v in parameters.items()}},
                          self.ctx.region, build_one)  # fmt: skip
        problems += expanded.problems
        problems += self._check_resources(expanded, parameters)
        unique: dict[tuple[str, str], Problem] = {}
        for problem in problems:
            unique.setdefault((problem.where, problem.message), problem)
        if unique:
            raise TemplateInvalid(list(unique.values()))
        self.ctx.packages.update(expanded.packages)
        return parameters, expanded

    def _where(self, line: int | None) -> str:
        """The resource whose lines contain ``line`` (for problems found by walking)."""
        assert self.template is not None
        best = "template"
        for lid in self.template.resources:
            start = self.template.line("Resources", lid)
            if start is not None and line is not None and start <= line:
                best = lid
        return best

    def _check_resources(self, expanded: Any, parameters: dict[str, Any]) -> list[Problem]:
        known = set(expanded.resources) | set(parameters) | PSEUDO
        conditions = set(self._conditions())
        problems: list[Problem] = []
        for lid, res in expanded.resources.items():
            if any(lid.startswith(c) for c in expanded.covered):
                continue
            where = origin(self.template, lid) if self.template else lid
            kind_name = res.get("Type") if isinstance(res, dict) else None
            kind = KINDS.get(str(kind_name))
            generated = "" if where == lid else f" (made by SAM for {where})"
            if kind is None:
                problems.append(Problem(where, self._line(lid), (
                    f"resource type {kind_name}{generated} is not supported by nimbus deploy"
                )))  # fmt: skip
                continue
            for key in set(res) - _RESOURCE_KEYS:
                problems.append(Problem(where, self._line(lid), f"{lid}: resource key {key} "
                                        "is not supported"))  # fmt: skip
            props = res.get("Properties") or {}
            for prop in props:
                if prop not in kind.properties:
                    problems.append(Problem(where, self._line(lid, prop), (
                        f"{kind_name}{generated}: property {prop} is not supported by nimbus "
                        f"deploy (supported: {', '.join(sorted(kind.properties))})"
                    )))  # fmt: skip
            for prop in sorted(kind.required - set(props)):
                problems.append(Problem(where, self._line(lid), f"{kind_name}: {prop} is required"))
            for prop, message in kind.check(props):
                problems.append(Problem(where, self._line(lid, prop), f"{kind_name}: {message}"))
            for prop, value in props.items():
                for _, message in check(value, known, conditions):
                    problems.append(Problem(where, self._line(lid, prop), message))
            if res.get("Condition") is not None and res["Condition"] not in conditions:
                problems.append(Problem(where, self._line(lid), f"Condition {res['Condition']!r} "
                                        "is not defined in Conditions"))  # fmt: skip
        for name, output in expanded.outputs.items():
            for _, message in check(output, known, conditions):
                assert self.template is not None
                problems.append(Problem(f"Outputs.{name}", self.template.line("Outputs", name),
                                        message))  # fmt: skip
        return problems

    def _conditions(self) -> dict[str, Any]:
        body = self.template.body if self.template else {}
        found = body.get("Conditions")
        return dict(found) if isinstance(found, dict) else {}

    def _pseudo(self) -> dict[str, Any]:
        ctx = self.ctx
        return {
            "AWS::Region": ctx.region, "AWS::AccountId": ctx.account,
            "AWS::StackName": ctx.stack, "AWS::Partition": "aws",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{ctx.region}:{ctx.account}:stack/{ctx.stack}/nimbus"
            ),
            "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": [],
        }  # fmt: skip

    # -- applying -------------------------------------------------------------------------

    def deploy(self, given: dict[str, str]) -> Outcome:
        parameters, expanded = self.prepare(given)
        outcome = Outcome()
        made: dict[str, Made] = {}

        def lookup(lid: str, attribute: str | None) -> Any:
            if lid not in made:
                raise Unresolved(f"{lid} is not deployed (its Condition is false?)")
            if attribute is None:
                return made[lid].physical_id
            if attribute not in made[lid].attributes:
                raise DeployError(f"Fn::GetAtt {lid}.{attribute}: {lid} has no attribute "
                                  f"{attribute} in nimbus (it has "
                                  f"{', '.join(made[lid].attributes) or 'none'})")  # fmt: skip
            return made[lid].attributes[attribute]

        resolver = Resolver(parameters, self._pseudo(), self._conditions(),
                            dict(self.template.body.get("Mappings") or {}) if self.template else {},
                            lookup)  # fmt: skip
        resources = expanded.resources
        wanted = {
            lid
            for lid, res in resources.items()
            if res.get("Condition") is None or resolver.condition(res["Condition"])
        }
        deps = {lid: sorted((references(resources[lid].get("Properties") or {})
                             | set(_depends_on(resources[lid]))) & wanted - {lid})
                for lid in resources if lid in wanted}  # fmt: skip
        starters = {lid for lid in deps if _starts_events(resources[lid].get("Type"))}
        for lid in _order(deps, last=starters):
            res = resources[lid]
            try:
                props = resolver.resolve(res.get("Properties") or {})
                change = self._apply(lid, res, props, deps[lid], made)
            except DeployError:
                raise
            except Exception as exc:
                raise DeployError(f"{lid} ({res['Type']}): {_reason(exc)}") from exc
            outcome.changes.append(change)
        for lid in self._removal_order(set(self.state.resources) - wanted):
            outcome.changes.append(self._remove(lid))
        for entry in made.values():
            outcome.urls += entry.urls
        outcome.urls += self._api_urls(made, resources)
        for name, output in expanded.outputs.items():
            try:
                value = resolver.resolve(output.get("Value"))
            except Exception as exc:  # an output of a resource nimbus does not have
                value = f"(unavailable: {_reason(exc)})"
            outcome.outputs[name] = self._localize(value, made)
        return outcome

    def _apply(self, lid: str, res: dict[str, Any], props: dict[str, Any], deps: list[str],
               made: dict[str, Made]) -> Change:  # fmt: skip
        kind, kind_name = KINDS[res["Type"]], res["Type"]
        identity = kind.identity(self.ctx, props)
        digest = hashlib.sha256(
            json.dumps(identity, sort_keys=True, default=str).encode()
        ).hexdigest()
        old = self.state.resources.get(lid)
        retain = res.get("DeletionPolicy") == "Retain"
        action = "created"
        if old is not None and old.type == kind_name:
            current = Made(old.physical_id, old.attributes, old.urls)
            if old.digest == digest:
                made[lid] = current
                return Change(lid, kind_name, "unchanged", old.physical_id)
            replace = any(identity.get(k) != old.applied.get(k) for k in kind.replace_on)
            if not replace:
                made[lid] = kind.update(self.ctx, lid, current, props, old.applied)
                self._record(lid, kind_name, made[lid], identity, digest, deps, retain)
                return Change(lid, kind_name, "updated", made[lid].physical_id)
            self._drop(lid)
            action = "replaced"
        elif old is not None:
            self._drop(lid)
            action = "replaced"
        made[lid] = kind.create(self.ctx, lid, props)
        self._record(lid, kind_name, made[lid], identity, digest, deps, retain)
        if kind_name == "AWS::IAM::Role":  # recorded for its ARN, nothing made on the server
            action = "skipped"
        return Change(lid, kind_name, action, made[lid].physical_id)

    def _record(self, lid: str, kind_name: str, made: Made, identity: dict[str, Any],
                digest: str, deps: list[str], retain: bool) -> None:  # fmt: skip
        self.state.resources[lid] = states.Entry(
            kind_name, made.physical_id, made.attributes, made.urls, identity, digest, deps, retain
        )
        states.save(self.state_path, self.state)

    def _drop(self, lid: str) -> str:
        """Delete a resource the stack no longer wants (or keep it when it is retained);
        what became of it: deleted, retained or kept."""
        entry = self.state.resources.pop(lid)
        outcome = "retained" if entry.retain else "deleted"
        if entry.retain:
            self.state.retained.append(entry)
        else:
            try:
                KINDS[entry.type].delete(self.ctx, Made(entry.physical_id, entry.attributes))
            except Kept as kept:
                self.ctx.note(str(kept))
                outcome = "kept"
        states.save(self.state_path, self.state)
        return outcome

    def _remove(self, lid: str) -> Change:
        entry = self.state.resources[lid]
        try:
            outcome = self._drop(lid)
        except Exception as exc:
            raise DeployError(f"deleting {lid} ({entry.type}): {_reason(exc)}") from exc
        return Change(lid, entry.type, outcome, entry.physical_id)

    def _removal_order(self, lids: set[str]) -> list[str]:
        """Dependents first, and what starts events before everything else, so nothing
        fires into a half-removed stack."""
        kept = [lid for lid in self.state.resources if lid in lids]
        deps = {lid: [d for d in self.state.resources[lid].depends_on if d in lids] for lid in kept}
        starters = {lid for lid in kept if _starts_events(self.state.resources[lid].type)}
        return list(reversed(_order(deps, last=starters)))

    def remove(self) -> list[Change]:
        """Delete everything the stack made (dependents first), then its state file."""
        changes = [self._remove(lid) for lid in self._removal_order(set(self.state.resources))]
        for entry in self.state.retained:
            KINDS[entry.type].delete(self.ctx, Made(entry.physical_id, entry.attributes))
            changes.append(Change("(retained)", entry.type, "deleted", entry.physical_id))
        self.state_path.unlink(missing_ok=True)
        return changes

    # -- what to print --------------------------------------------------------------------

    def _api_urls(self, made: dict[str, Made], resources: dict[str, Any]) -> list[str]:
        urls: list[str] = []
        v2 = None
        for lid, res in resources.items():
            if res.get("Type") not in _API_TYPES or lid not in made:
                continue
            v2 = v2 or self.ctx.client("apigatewayv2")
            api_id, endpoint = made[lid].physical_id, made[lid].attributes["ApiEndpoint"]
            stages = [s["StageName"] for s in v2.get_stages(ApiId=api_id)["Items"]]
            for route in v2.get_routes(ApiId=api_id)["Items"]:
                key = route["RouteKey"]
                path = "/" if key == "$default" else key.partition(" ")[2]
                for stage in stages:
                    base = endpoint if stage == "$default" else f"{endpoint}/{stage}"
                    urls.append(f"{base}{path}")
        return urls

    def _localize(self, value: Any, made: dict[str, Made]) -> Any:
        """AWS's execute-api URLs of this stack's APIs, as this nimbus serves them."""
        if not isinstance(value, str):
            return value
        endpoints = {m.physical_id: m.attributes["ApiEndpoint"] for m in made.values()
                     if "ApiEndpoint" in m.attributes}  # fmt: skip
        match = _EXECUTE_API.match(value)
        if match and match[1] in endpoints:
            return endpoints[match[1]] + value[match.end() :]
        return value


def _depends_on(res: dict[str, Any]) -> list[str]:
    value = res.get("DependsOn") or []
    return [value] if isinstance(value, str) else list(value)


def _starts_events(type_name: object) -> bool:
    kind = KINDS.get(str(type_name))
    return kind is not None and kind.starts_events


def _order(deps: dict[str, list[str]], last: Collection[str] = ()) -> list[str]:
    """Dependencies first; ``last`` (what starts events), and whatever depends on it,
    after everything else; template order otherwise (``deps``' order); a cycle is an
    error."""
    # What depends on a starter, however indirectly, waits with it: visited early, it
    # would pull the starter in before the rest.
    deferred = set(last)
    grew = True
    while grew:
        grew = False
        for lid, needs in deps.items():
            if lid not in deferred and deferred.intersection(needs):
                deferred.add(lid)
                grew = True
    done: list[str] = []
    seen: set[str] = set()
    visiting: list[str] = []

    def visit(lid: str) -> None:
        if lid in seen:
            return
        if lid in visiting:
            cycle = " -> ".join([*visiting[visiting.index(lid) :], lid])
            raise DeployError(f"resources depend on each other in a circle: {cycle}")
        visiting.append(lid)
        for dep in deps.get(lid, []):
            if dep in deps:
                visit(dep)
        visiting.pop()
        seen.add(lid)
        done.append(lid)

    for lid in sorted(deps, key=lambda lid: lid in deferred):  # stable: template order kept
        visit(lid)
    return done


def _reason(exc: Exception) -> str:
    """The server's error as ``Code: message`` (botocore), else the exception's text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc) or type(exc).__name__
