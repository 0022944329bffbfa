"""botocore's service models, loaded once per process and indexed for serving.

A ``ServiceSpec`` is what the parser, serialiser and router need of one service: its
model as botocore ships it, the protocols its clients speak (SQS: JSON, and the query
protocol of older SDKs, served from a copy of the model with the query-era names of
``compat.py``), how requests name it (``X-Amz-Target`` prefix, SigV4 signing name) and
its errors' wire identities. Everything is computed on first use and cached: no request
loads or walks a model file.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel, StructureShape

from nimbus.protocol.compat import BY_SERVICE, QueryCompat

PROTOCOLS = frozenset({"query", "json", "rest-json", "rest-xml"})
REST = frozenset({"rest-json", "rest-xml"})


@dataclass(frozen=True)
class ErrorInfo:
    """How an error goes on the wire: the code clients map (the query-era code for a
    query-compatible service), its HTTP status and fault side (None: not modeled, the
    raised exception decides), and its shape when the model has one."""

    code: str
    status: int | None
    sender: bool | None
    shape: StructureShape | None

    @property
    def message_key(self) -> str:
        """The member the shape carries its message in ("message" or "Message")."""
        if self.shape is not None:
            for name in self.shape.members:
                if name.lower() == "message":
                    return name
        return "message"


class ServiceSpec:
    """One service's model, indexed for the protocol layer (see the module docstring)."""

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.model = ServiceModel(data, service_name=name)
        metadata = self.model.metadata
        self.protocol: str = metadata["protocol"]
        declared = metadata.get("protocols") or [self.protocol]
        self.query_compatible = "awsQueryCompatible" in metadata
        self.compat: QueryCompat | None = BY_SERVICE.get(name) if self.query_compatible else None
        protocols = {p for p in declared if p in PROTOCOLS}
        if self.compat is not None:
            protocols.add("query")
        if not protocols:
            raise ValueError(f"nimbus speaks none of {name}'s protocols {declared}")
        self.protocols = frozenset(protocols)
        self.target_prefix: str | None = metadata.get("targetPrefix")
        self.signing_name: str = self.model.signing_name or name
        self.json_version: str = metadata.get("jsonVersion", "1.0")
        self.query_model = self._query_model(data) if "query" in self.protocols else None
        self.xml_namespace: str | None = (
            self.query_model.metadata.get("xmlNamespace") if self.query_model else None
        )
        self._operations = {op: self.model.operation_model(op) for op in self.model.operation_names}
        self._query_operations = (
            {op: self.query_model.operation_model(op) for op in self.query_model.operation_names}
            if self.query_model is not None
            else {}
        )
        self._errors: dict[str, ErrorInfo] = {}
        for shape in self.model.error_shapes:
            self._errors[shape.name] = self._error_info(shape)
        for info in list(self._errors.values()):  # raising the wire code works as well
            self._errors.setdefault(info.code, info)

    @property
    def is_rest(self) -> bool:
        return self.protocol in REST

    def operation(self, name: str, protocol: str) -> OperationModel | None:
        """The operation ``name`` as ``protocol``'s clients send it (None: no such one)."""
        found = (self._query_operations if protocol == "query" else self._operations).get(name)
        return found

    def operations(self) -> list[OperationModel]:
        return list(self._operations.values())

    def error(self, type_name: str) -> ErrorInfo:
        """The wire identity of an error named ``type_name`` (a shape name, or a code of
        AWS's common errors the model does not list)."""
        found = self._errors.get(type_name)
        if found is not None:
            return found
        code = type_name
        if self.compat is not None:
            code = self.compat.renamed.get(type_name, type_name)
        return ErrorInfo(code, None, None, None)

    def _error_info(self, shape: StructureShape) -> ErrorInfo:
        trait = shape.metadata.get("error") or {}
        legacy = self.compat.errors.get(shape.name) if self.compat is not None else None
        if legacy is not None:
            return ErrorInfo(legacy.code, legacy.status, legacy.sender, shape)
        return ErrorInfo(
            trait.get("code", shape.name),
            trait.get("httpStatusCode"),
            trait.get("senderFault"),
            shape,
        )

    def _query_model(self, data: dict[str, Any]) -> ServiceModel:
        if self.protocol == "query":
            return self.model
        assert self.compat is not None
        patched = copy.deepcopy(data)
        patched["metadata"]["protocol"] = "query"
        patched["metadata"]["protocols"] = ["query"]
        patched["metadata"]["xmlNamespace"] = self.compat.xml_namespace
        for name, operation in patched["operations"].items():
            if "output" in operation:  # query answers wrap the output in <NameResult>
                operation["output"].setdefault("resultWrapper", f"{name}Result")
        shapes = patched["shapes"]
        for shape_name, names in self.compat.names.items():
            shape = shapes.get(shape_name)
            if shape is None:
                continue  # a later model dropped it: nothing to name
            for part, location in names.items():
                if part == "":
                    shape["locationName"] = location
                elif part.startswith("."):
                    member = shape.get("members", {}).get(part[1:])
                    if member is not None:
                        member["locationName"] = location
                elif part in shape:
                    shape[part]["locationName"] = location
        return ServiceModel(patched, service_name=self.name)


@functools.cache
def _loader() -> Any:
    return create_loader()


@functools.cache
def load(name: str) -> ServiceSpec:
    """The spec of botocore's service ``name`` ("sqs", "scheduler", ...), loaded once."""
    data = _loader().load_service_model(name, "service-2")
    return ServiceSpec(name, data)
