"""Imported at start-up by the interpreters of the live protocol test's nimbus (its
PYTHONPATH leads here): registers the test-only SQS service of ``tests.protocol.echo``
when NIMBUS_TEST_ECHO_SQS is set. Nothing of it is in nimbus' own ``SERVICES``."""

import os

if os.environ.get("NIMBUS_TEST_ECHO_SQS"):
    from tests.protocol.echo import ECHO_SQS

    from nimbus.api.aws_services import SERVICES

    # In place of nimbus' own SQS, if it has one by now: this server is the test's.
    SERVICES[:] = [ECHO_SQS, *(s for s in SERVICES if s.name != "sqs")]
