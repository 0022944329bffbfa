"""The ``nimbus`` command: every command family's commands on one Typer app."""

from __future__ import annotations

import typer

from nimbus.cli import apis, dead_letters, functions, schedules, server, urls

app = typer.Typer(
    help="nimbus: AWS Lambda's model and API on your own machine.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(server.up)
app.command()(server.credentials)
app.command()(functions.invoke)
app.command()(functions.logs)
app.command("ls")(functions.list_functions)
app.add_typer(dead_letters.dlq, name="dlq")
app.command()(server.doctor)
app.command()(server.version)
app.add_typer(urls.url_app, name="url")
app.add_typer(apis.api_app, name="api")
app.add_typer(schedules.schedules_app, name="schedules")


def main() -> None:
    app()
