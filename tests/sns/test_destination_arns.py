"""SNS topics as async destinations: which ARNs are taken (checked before anything is
stored), and which are refused in nimbus's words."""

from __future__ import annotations

import pytest

from nimbus.config import Config
from nimbus.errors import InvalidParameterValue
from nimbus.events.destinations import parse_destination


def test_a_topic_of_this_nimbus_is_a_destination() -> None:
    config = Config.model_validate({"data_dir": "/nonexistent"})
    arn = "arn:aws:sns:us-east-1:000000000000:outcomes"
    assert parse_destination(arn, config).topic == arn
    with pytest.raises(InvalidParameterValue, match="another region or account"):
        parse_destination("arn:aws:sns:eu-west-1:000000000000:outcomes", config)
    with pytest.raises(InvalidParameterValue, match="not a valid SNS topic ARN"):
        parse_destination("arn:aws:sns:us-east-1:000000000000:t.fifo", config)
