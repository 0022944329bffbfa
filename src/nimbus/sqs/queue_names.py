"""What queue a ``QueueUrl`` member names, in every form the SQS API accepts.

SQS takes the queue's URL (``https://<host>/<account>/<name>``), and nimbus also takes a
bare name, ``<account>/<name>``, or any of these with a trailing slash. The SQS handlers
(``nimbus.api.sqs``) and access control (``nimbus.api.access``) must read the member the
same way, or an IAM Deny on a queue's ARN could be dodged by naming the queue in a form
access control does not recognise: this module is that one reading.
"""

from __future__ import annotations


def queue_ref(url: str, account_id: str) -> tuple[str, str]:
    """The (account, name) of the queue ``url`` names; a bare name is ``account_id``'s."""
    parts = url.rstrip("/").split("/")
    return (parts[-2] if len(parts) > 1 else account_id), parts[-1]


def named_queue(url: str, account_id: str) -> str | None:
    """The name of the queue ``url`` names in ``account_id``; None when it names a queue
    of another account (SQS's QueueDoesNotExist)."""
    account, name = queue_ref(url, account_id)
    return name if account == account_id else None
