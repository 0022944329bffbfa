"""Unit tests of the handler: an SQS batch in, the failed messages' ids out.
Run from the blueprint's folder: ``python -m pytest tests``."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app


def sqs_event(*bodies):
    """An SQS event as Lambda delivers it (the fields the handler reads)."""
    return {
        "Records": [
            {"messageId": f"m{i}", "body": body, "eventSource": "aws:sqs"}
            for i, body in enumerate(bodies)
        ]
    }


def test_all_processed():
    event = sqs_event(json.dumps({"order": 1, "amount": 5}), json.dumps({"order": 2, "amount": 1}))
    assert app.handler(event, None) == {"batchItemFailures": []}


def test_only_failed_messages_are_reported():
    event = sqs_event(json.dumps({"order": 1, "amount": 5}), "not json", json.dumps({"order": 3}))
    assert app.handler(event, None) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    }
