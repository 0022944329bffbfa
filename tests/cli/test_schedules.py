"""`nimbus schedules`, run as a user runs it, against a live server: what it creates,
boto3's scheduler client sees; what it deletes is gone; errors are the server's."""

from __future__ import annotations

from tests.cli.conftest import nimbus_cli
from tests.conftest import HELLO, ROLE
from tests.nimbus_process import NimbusProcess


def test_create_list_delete(nimbus: NimbusProcess) -> None:
    lam, sched = nimbus.client(), nimbus.client("scheduler")
    lam.create_function(FunctionName="nightly-job", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": HELLO})  # fmt: skip
    made = nimbus_cli(nimbus, "schedules", "create", "nightly", "--function", "nightly-job",
                      "--expression", "cron(0 2 * * ? *)", "--input", '{"full": true}',
                      "--timezone", "Europe/Paris", "--disabled")  # fmt: skip
    assert made.returncode == 0, made.stderr
    arn = made.stdout.strip()
    assert arn == "arn:aws:scheduler:us-east-1:000000000000:schedule/default/nightly"
    got = sched.get_schedule(Name="nightly")
    assert got["Target"]["Arn"].endswith(":function:nightly-job")
    assert got["Target"]["Input"] == '{"full": true}' and got["State"] == "DISABLED"
    assert got["ScheduleExpressionTimezone"] == "Europe/Paris"

    listed = nimbus_cli(nimbus, "schedules", "list")
    assert listed.returncode == 0 and "nightly" in listed.stdout and "DISABLED" in listed.stdout

    bad = nimbus_cli(nimbus, "schedules", "create", "x", "--function", "nightly-job",
                     "--expression", "rate(1 minutes)")  # fmt: skip
    assert bad.returncode == 2
    assert "ValidationException: Invalid Schedule Expression rate(1 minutes)." in bad.stderr
    missing = nimbus_cli(nimbus, "schedules", "create", "y", "--function", "nope",
                         "--expression", "rate(1 hour)")  # fmt: skip
    assert missing.returncode == 2 and "ResourceNotFoundException" in missing.stderr

    gone = nimbus_cli(nimbus, "schedules", "delete", "nightly")
    assert gone.returncode == 0, gone.stderr
    assert sched.list_schedules()["Schedules"] == []
    again = nimbus_cli(nimbus, "schedules", "delete", "nightly")
    assert again.returncode == 2 and "Schedule nightly does not exist." in again.stderr
