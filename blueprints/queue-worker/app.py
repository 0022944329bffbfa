"""A queue worker: an SQS batch in, each message processed on its own, and only the
messages that failed handed back (ReportBatchItemFailures), so the queue redelivers
those and not the whole batch.

A message is JSON: {"order": <id>, "amount": <number>}; anything else fails.
"""

import json


def process(message):
    """The work for one message; raise to have it redelivered."""
    order = json.loads(message["body"])
    if not isinstance(order, dict) or not isinstance(order.get("amount"), (int, float)):
        raise ValueError(f"not an order: {message['body']!r}")
    print(f"order {order.get('order')}: {order['amount']}")


def handler(event, context):
    failures = []
    for record in event.get("Records", []):
        try:
            process(record)
        except Exception as exc:
            print(f"message {record['messageId']} failed: {exc}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
