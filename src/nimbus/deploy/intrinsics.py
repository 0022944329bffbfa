"""CloudFormation's intrinsic functions, resolved on the client as CloudFormation would.

Supported: ``Ref`` (resources, parameters, pseudo parameters, ``AWS::NoValue``),
``Fn::Sub`` (string and ``[string, {vars}]`` forms, ``${!Literal}``), ``Fn::GetAtt``,
``Fn::Join``, ``Fn::If`` with ``Conditions`` (``Fn::Equals``, ``Fn::Not``, ``Fn::And``,
``Fn::Or``, ``Condition``), ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap`` and
``Fn::Base64``. ``check`` finds what is unsupported or refers to nothing before anything is
deployed; ``references`` gives the resources a value depends on, for ordering."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from typing import Any

SUPPORTED = frozenset({
    "Ref", "Fn::Sub", "Fn::GetAtt", "Fn::Join", "Fn::If", "Fn::Equals", "Fn::Not",
    "Fn::And", "Fn::Or", "Fn::Select", "Fn::Split", "Fn::FindInMap", "Fn::Base64",
    "Condition",
})  # fmt: skip
PSEUDO = frozenset({
    "AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::StackId", "AWS::Partition",
    "AWS::URLSuffix", "AWS::NoValue", "AWS::NotificationARNs",
})  # fmt: skip
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class _NoValue:
    """``Ref: AWS::NoValue``: the property is removed."""


NO_VALUE = _NoValue()


class Unresolved(Exception):
    """A value needs a resource that does not exist (yet)."""


def is_intrinsic(value: Any) -> str | None:
    """The function's name when ``value`` is an intrinsic call (a one-key Fn:: / Ref dict)."""
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key == "Ref" or key.startswith("Fn::") or key == "Condition":
            return str(key)
    return None


def _sub_parts(value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    ):
        return value[0], value[1]
    raise ValueError("Fn::Sub takes a string or [string, {variables}]")


def _sub_names(text: str) -> Iterator[str]:
    for match in _SUB_VAR.finditer(text):
        if not match[1].startswith("!"):
            yield match[1].strip()


def references(value: Any) -> set[str]:
    """The logical ids (or parameter names) ``value`` refers to through Ref, GetAtt, Sub."""
    found: set[str] = set()
    name = is_intrinsic(value)
    if name == "Ref" and isinstance(value["Ref"], str):
        found.add(value["Ref"])
    elif name == "Fn::GetAtt" and isinstance(value[name], list) and value[name]:
        found.add(str(value[name][0]))
    elif name == "Fn::Sub":
        try:
            text, variables = _sub_parts(value[name])
        except ValueError:
            return found
        for var in _sub_names(text):
            if var not in variables:
                found.add(var.split(".", 1)[0])
        for v in variables.values():
            found |= references(v)
        return found
    if isinstance(value, dict):
        for v in value.values():
            found |= references(v)
    elif isinstance(value, list):
        for v in value:
            found |= references(v)
    return found


def check(value: Any, known: set[str], conditions: set[str]) -> Iterator[tuple[Any, str]]:
    """(node, message) for each unsupported intrinsic or reference to nothing in ``value``.
    ``known``: resources, parameters and pseudo parameters; ``conditions``: condition names."""
    name = is_intrinsic(value)
    if name is not None:
        arg = value[name]
        if name not in SUPPORTED:
            yield (
                value,
                (
                    f"intrinsic function {name} is not supported by nimbus deploy (supported: "
                    f"{', '.join(sorted(SUPPORTED))})"
                ),
            )
            return
        if name == "Ref" and (not isinstance(arg, str) or arg not in known):
            yield value, f"Ref to {arg!r}, which is no resource, parameter or pseudo parameter"
        elif name == "Fn::GetAtt":
            if not (isinstance(arg, list) and len(arg) == 2 and arg[0] in known):
                yield value, f"Fn::GetAtt of {arg!r}: give [LogicalId, Attribute] of a resource"
        elif name == "Fn::Sub":
            try:
                text, variables = _sub_parts(arg)
            except ValueError as exc:
                yield value, str(exc)
                return
            for var in _sub_names(text):
                if var not in variables and var.split(".", 1)[0] not in known:
                    yield value, f"Fn::Sub refers to ${{{var}}}, which is not defined"
        elif name in ("Fn::If", "Condition"):
            cond = arg[0] if name == "Fn::If" and isinstance(arg, list) else arg
            if cond not in conditions:
                yield value, f"{name} names condition {cond!r}, which Conditions does not define"
            if name == "Fn::If" and not (isinstance(arg, list) and len(arg) == 3):
                yield value, "Fn::If takes [Condition, ValueIfTrue, ValueIfFalse]"
    if isinstance(value, dict):
        for v in value.values():
            yield from check(v, known, conditions)
    elif isinstance(value, list):
        for v in value:
            yield from check(v, known, conditions)


class Resolver:
    """Resolves intrinsics against parameters, pseudo parameters, conditions and mappings,
    and resources through ``lookup(logical_id, attribute)`` (attribute None: Ref), which
    raises ``Unresolved`` for what does not exist yet."""

    def __init__(
        self,
        parameters: dict[str, Any],
        pseudo: dict[str, Any],
        conditions: dict[str, Any],
        mappings: dict[str, Any],
        lookup: Callable[[str, str | None], Any],
    ) -> None:
        self.values = {**pseudo, **parameters}
        self.conditions = conditions
        self.mappings = mappings
        self.lookup = lookup
        self._decided: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._decided:
            if name not in self.conditions:
                raise ValueError(f"condition {name!r} is not defined in Conditions")
            self._decided[name] = bool(self.resolve(self.conditions[name]))
        return self._decided[name]

    def resolve(self, value: Any) -> Any:
        name = is_intrinsic(value)
        if name is not None:
            return self._call(name, value[name])
        if isinstance(value, dict):
            out = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        return value

    def _ref(self, target: str, attribute: str | None = None) -> Any:
        if attribute is None and target == "AWS::NoValue":
            return NO_VALUE
        if attribute is None and target in self.values:
            return self.values[target]
        return self.lookup(target, attribute)

    def _call(self, name: str, arg: Any) -> Any:
        if name == "Ref":
            return self._ref(arg)
        if name == "Fn::GetAtt":
            target, attribute = self.resolve(arg)
            return self._ref(str(target), str(attribute))
        if name == "Fn::Sub":
            text, variables = _sub_parts(arg)
            local = {k: self.resolve(v) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                var = match[1]
                if var.startswith("!"):
                    return "${" + var[1:] + "}"
                var = var.strip()
                if var in local:
                    return str(local[var])
                target, _, attribute = var.partition(".")
                return str(self._ref(target, attribute or None))

            return _SUB_VAR.sub(substitute, text)
        if name == "Fn::Join":
            sep, items = self.resolve(arg)
            return str(sep).join(str(i) for i in items)
        if name == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if name == "Fn::Split":
            sep, text = self.resolve(arg)
            return str(text).split(str(sep))
        if name == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(cond) else no)
        if name == "Condition":
            return self.condition(arg)
        if name == "Fn::Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if name == "Fn::Not":
            (inner,) = self.resolve(arg)
            return not inner
        if name == "Fn::And":
            return all(self.resolve(arg))
        if name == "Fn::Or":
            return any(self.resolve(arg))
        if name == "Fn::FindInMap":
            mapping, top, second = self.resolve(arg)
            try:
                return self.mappings[mapping][top][second]
            except (KeyError, TypeError) as exc:
                raise ValueError(
                    f"Fn::FindInMap: {mapping}/{top}/{second} is not in Mappings"
                ) from exc
        if name == "Fn::Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        raise ValueError(f"intrinsic function {name} is not supported")
