"""Loading a CloudFormation / SAM template (YAML or JSON) while keeping where each item is.

Mappings load as ``LocatedDict`` and sequences as ``LocatedList``: plain ``dict`` / ``list``
subclasses that also know their own line and each key's line, so any problem found later
can name the template line it comes from. CloudFormation's short tags (``!Ref``, ``!Sub``,
``!GetAtt A.B``...) load as their long forms (``{"Ref": ...}``, ``{"Fn::GetAtt": [A, B]}``).
Timestamps stay strings (``AWSTemplateFormatVersion: 2010-09-09`` unquoted is common)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nimbus.deploy.problems import DeployError


class LocatedDict(dict[str, Any]):
    """A mapping that remembers its line and the line of each of its keys."""

    line: int | None = None
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int | None:
        lines = getattr(self, "key_lines", {})
        return lines.get(key, self.line)


class LocatedList(list[Any]):
    """A sequence that remembers its line."""

    line: int | None = None


# Short tags whose long form is "Fn::<Name>"; Ref and Condition keep their own names.
_FN_TAGS = (
    "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split", "FindInMap",
    "Base64", "GetAZs", "ImportValue", "Cidr", "Transform", "Length", "ToJsonString",
)  # fmt: skip


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps lines and knows CloudFormation's short tags."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    loader.flatten_mapping(node)
    result = LocatedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


def _located(value: Any, node: yaml.Node, key: str) -> LocatedDict:
    result = LocatedDict({key: value})
    result.line = node.start_mark.line + 1
    result.key_lines = {key: result.line}
    return result


def _tag_value(loader: _Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return _construct_sequence(loader, node)
    return _construct_mapping(loader, node)


def _short_tag(key: str) -> Any:
    def construct(loader: _Loader, node: yaml.Node) -> LocatedDict:
        return _located(_tag_value(loader, node), node, key)

    return construct


def _get_att(loader: _Loader, node: yaml.Node) -> LocatedDict:
    value = _tag_value(loader, node)
    if isinstance(value, str):  # !GetAtt Resource.Attribute (the attribute may hold dots)
        resource, _, attribute = value.partition(".")
        located = LocatedList([resource, attribute])
        located.line = node.start_mark.line + 1
        value = located
    return _located(value, node, "Fn::GetAtt")


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_Loader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)
_Loader.add_constructor("!Ref", _short_tag("Ref"))
_Loader.add_constructor("!Condition", _short_tag("Condition"))
_Loader.add_constructor("!GetAtt", _get_att)
for _name in _FN_TAGS:
    _Loader.add_constructor(f"!{_name}", _short_tag(f"Fn::{_name}"))


def plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (what AWS's transform expects)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@dataclass
class Template:
    """A loaded template: its data (with lines) and where it lives."""

    path: Path | None  # None for the template nimbus makes for a plain folder
    root: Path  # the folder relative paths (CodeUri, ContentUri) start from
    body: LocatedDict

    def line(self, *keys: str) -> int | None:
        """The line of the deepest of ``keys`` (a path from the top) that exists."""
        node: Any = self.body
        line = self.body.line
        for key in keys:
            if isinstance(node, LocatedDict) and key in node:
                line = node.line_of(key) or line
                node = node[key]
            else:
                break
        return line

    @property
    def resources(self) -> dict[str, Any]:
        found = self.body.get("Resources")
        return found if isinstance(found, dict) else {}


def load_text(text: str, path: Path | None, root: Path) -> Template:
    """Parse a template's text; a YAML error names its line."""
    try:
        body = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise DeployError(f"{path or 'template'}: {where}{exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise DeployError(f"{path or 'template'}: not valid YAML or JSON: {exc}") from exc
    if not isinstance(body, LocatedDict):
        raise DeployError(f"{path or 'template'}: a template is a mapping with Resources")
    if not isinstance(body.get("Resources"), dict) or not body["Resources"]:
        raise DeployError(f"{path or 'template'}: the template has no Resources")
    return Template(path, root, body)


def load(path: Path) -> Template:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from exc
    return load_text(text, path, path.parent)
