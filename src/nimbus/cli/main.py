"""The ``nimbus`` command: every command family's commands on one Typer app."""

from __future__ import annotations

import typer

from nimbus.cli import (
    apis,
    blueprints,
    dead_letters,
    deploy,
    dev,
    inventory,
    invocation,
    logs,
    schedules,
    server,
    urls,
)

app = typer.Typer(
    help="nimbus: AWS Lambda's model and API on your own machine.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(server.up)
app.command()(server.worker)
app.command()(server.credentials)
app.command()(invocation.invoke)
app.command()(logs.logs)
app.command("ls")(inventory.list_functions)
app.command("rm")(deploy.remove)  # a function NAME, or --stack (deploy.py dispatches)
app.command()(deploy.deploy)
app.command("init")(blueprints.init)
app.command()(dev.dev)
app.add_typer(dead_letters.dlq, name="dlq")
app.command()(server.doctor)
app.command()(server.version)
app.add_typer(urls.url_app, name="url")
app.add_typer(apis.api_app, name="api")
app.add_typer(schedules.schedules_app, name="schedules")


def main() -> None:
    app()
