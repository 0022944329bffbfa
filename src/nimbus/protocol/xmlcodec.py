"""Shapes as XML, both ways, by the rules botocore's XML parsers and serialisers follow.

A structure member is an element named by its ``locationName`` (else the member name);
a list is ``<Name><member>..</member></Name>`` (the member's ``locationName`` instead of
``member``), or, flattened, repeated ``<Name>`` elements (named by the member's
``locationName`` when it has one); a map is ``<Name><entry><key/><value/></entry></Name>``,
or, flattened, repeated ``<Name><key/><value/></Name>`` (``key``/``value`` renamed by
their ``locationName``); ``xmlAttribute`` members are attributes.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from botocore.model import ListShape, MapShape, Shape, StructureShape

from nimbus.protocol.values import from_text, to_text

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#xD;"})


def escape(text: str) -> str:
    """Text as element content or attribute value (``\\r`` kept: XML parsers would
    otherwise turn it into ``\\n``)."""
    return text.translate(_ESCAPES)


def _tag(element: Element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[1] if tag.startswith("{") else tag


def member_element_name(shape: Shape, member: str) -> str:
    """The element a structure member is found under (flattened lists: their items')."""
    if shape.type_name == "list" and shape.serialization.get("flattened"):
        assert isinstance(shape, ListShape)
        named = shape.member.serialization.get("name")
        if named:
            return str(named)
    return str(shape.serialization.get("name", member))


# --- writing ---------------------------------------------------------------------------


def write(out: list[str], shape: Shape, value: Any, name: str) -> None:
    """Append ``value`` of ``shape`` as the element ``name`` to ``out``."""
    if value is None:
        return
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        attributes = ""
        inner: list[str] = []
        for member, member_shape in shape.members.items():
            item = value.get(member)
            if item is None:
                continue
            if member_shape.serialization.get("xmlAttribute"):
                attr = member_shape.serialization.get("name", member)
                attributes += f' {attr}="{escape(to_text(member_shape, item))}"'
                continue
            write(inner, member_shape, item, member_shape.serialization.get("name", member))
        namespace = shape.serialization.get("xmlNamespace")
        if isinstance(namespace, dict):
            prefix = namespace.get("prefix")
            attributes += f' xmlns{":" + prefix if prefix else ""}="{namespace["uri"]}"'
        elif isinstance(namespace, str):
            attributes += f' xmlns="{namespace}"'
        out.append(f"<{name}{attributes}>{''.join(inner)}</{name}>")
    elif kind == "list":
        assert isinstance(shape, ListShape)
        if shape.serialization.get("flattened"):
            item_name = shape.member.serialization.get("name", name)
            for item in value:
                write(out, shape.member, item, item_name)
        else:
            item_name = shape.member.serialization.get("name", "member")
            out.append(f"<{name}>")
            for item in value:
                write(out, shape.member, item, item_name)
            out.append(f"</{name}>")
    elif kind == "map":
        assert isinstance(shape, MapShape)
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        flattened = shape.serialization.get("flattened")
        if not flattened:
            out.append(f"<{name}>")
        for key, item in value.items():
            out.append(f"<{name}>" if flattened else "<entry>")
            write(out, shape.key, key, key_name)
            write(out, shape.value, item, value_name)
            out.append(f"</{name}>" if flattened else "</entry>")
        if not flattened:
            out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{escape(to_text(shape, value))}</{name}>")


# --- reading ---------------------------------------------------------------------------


class XmlValueError(ValueError):
    """An element whose text does not read as its shape; ``path`` names it."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


def read(shape: Shape, node: Element | list[Element], path: str) -> Any:
    """The value of ``shape`` in ``node`` (a list of elements for flattened lists/maps)."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        element = node[0] if isinstance(node, list) else node
        children: dict[str, list[Element]] = {}
        for child in element:
            children.setdefault(_tag(child), []).append(child)
        result: dict[str, Any] = {}
        for member, member_shape in shape.members.items():
            if member_shape.serialization.get("location"):
                continue  # in the URI, query or headers: not the body's
            if member_shape.serialization.get("xmlAttribute"):
                attr = member_shape.serialization.get("name", member)
                for key, text in element.attrib.items():
                    if key == attr or key.rsplit("}", 1)[-1] == attr.split(":")[-1]:
                        result[member] = from_text(member_shape, text)
                continue
            found = children.get(member_element_name(member_shape, member))
            if not found:
                continue
            flat = member_shape.serialization.get("flattened") and member_shape.type_name in (
                "list",
                "map",
            )
            result[member] = read(member_shape, found if flat else found[0], f"{path}.{member}")
        return result
    if kind == "list":
        assert isinstance(shape, ListShape)
        items = node if isinstance(node, list) else list(node)
        return [read(shape.member, item, f"{path}[{i}]") for i, item in enumerate(items)]
    if kind == "map":
        assert isinstance(shape, MapShape)
        entries = node if isinstance(node, list) else list(node)
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        mapped: dict[str, Any] = {}
        for entry in entries:
            entry_key: Any = None
            item: Any = None
            for part in entry:
                if _tag(part) == key_name:
                    entry_key = read(shape.key, part, path)
                elif _tag(part) == value_name:
                    item = read(shape.value, part, f"{path}.{entry_key}")
            if entry_key is not None:
                mapped[entry_key] = item
        return mapped
    element = node[0] if isinstance(node, list) else node
    text = element.text or ""
    try:
        return from_text(shape, text)
    except ValueError as exc:
        raise XmlValueError(path, str(exc)) from None
