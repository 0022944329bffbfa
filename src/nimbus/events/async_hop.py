"""One attempt of an async event as a trace records it (Lambda's service side): the
``AWS::Lambda`` segment of the hop between the caller and the function."""

from __future__ import annotations

import time

from nimbus import ids
from nimbus.errors import NimbusError
from nimbus.events.destinations import Destination
from nimbus.invocation.invoker import InvokeResult
from nimbus.observe.tracing import TraceHeader
from nimbus.queue.backend import QueuedEvent


class AsyncHop:
    """One attempt of an async event as Lambda's service side records it: an
    ``AWS::Lambda`` segment whose Parent is what the caller sent, with ``Dwell Time``
    (queued until this attempt started), the ``Attempt``, and a subsegment per
    destination the result went to, each the Parent of the hop it starts."""

    __slots__ = ("destinations", "event", "failed", "id", "ran_ms", "started_ms", "trace")

    def __init__(self, event: QueuedEvent, now: int) -> None:
        self.event = event
        self.id = ids.segment_id()
        self.started_ms = now
        self.trace = TraceHeader.parse(event.trace_id) or TraceHeader.new()
        self.ran_ms: int | None = None
        self.failed = False
        self.destinations: list[dict] = []

    def header(self) -> str:
        return str(self.trace.child(self.id))

    def ran(self, outcome: InvokeResult | NimbusError, now: int) -> None:
        self.ran_ms = now
        self.failed = not isinstance(outcome, InvokeResult) or outcome.function_error is not None

    def destination(self, destination: Destination, record: dict) -> str:
        condition = record.get("requestContext", {}).get("condition")
        doc: dict = {"id": ids.segment_id(), "start_time": time.time()}
        if destination.function is not None:
            doc.update(name=destination.function, namespace="aws",
                       aws={"resource_type": "AWS::Lambda::Function", "operation": "Invoke"})
        elif destination.queue is not None:
            doc.update(name=destination.queue, namespace="aws",
                       aws={"resource_type": "AWS::SQS::Queue", "operation": "SendMessage"})
        elif destination.topic is not None:
            doc.update(name=destination.topic.rsplit(":", 1)[-1], namespace="aws",
                       aws={"resource_type": "AWS::SNS::Topic", "operation": "Publish"})
        else:
            doc.update(name=destination.raw, namespace="remote")
        doc["annotations"] = {"destination": destination.raw, "condition": condition or ""}
        doc["end_time"] = doc["start_time"]
        self.destinations.append(doc)
        return str(self.trace.child(doc["id"]))

    def document(self, function_arn: str, now: int) -> dict:
        event = self.event
        start = event.enqueued_ms / 1000
        ran_from = self.started_ms / 1000
        subsegments: list[dict] = [
            {"id": ids.segment_id(), "name": "Dwell Time", "start_time": start,
             "end_time": ran_from},
        ]
        if self.ran_ms is not None:
            attempt = {"id": ids.segment_id(), "name": f"Attempt #{event.attempts + 1}",
                       "start_time": ran_from, "end_time": self.ran_ms / 1000}
            if self.failed:
                attempt["fault"] = True
            subsegments.append(attempt)
        subsegments.extend(self.destinations)
        doc: dict = {
            "trace_id": self.trace.root, "id": self.id, "name": event.function_name,
            "origin": "AWS::Lambda", "start_time": start, "end_time": now / 1000,
            "aws": {"request_id": event.request_id, "function_arn": function_arn},
            "subsegments": subsegments,
        }
        if self.trace.parent:
            doc["parent_id"] = self.trace.parent
        if self.failed or self.ran_ms is None:
            doc["fault"] = True
        return doc
