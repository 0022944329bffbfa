"""The ``nimbus`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nimbus.config import ConfigError, load_config

app = typer.Typer(
    help="nimbus: AWS Lambda's model and API on your own machine.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [9000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="State directory [./.nimbus]")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL URL instead of the embedded SQLite")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
) -> None:
    """Start nimbus: the Lambda API on http://HOST:PORT."""
    from nimbus.server import serve

    try:
        cfg = load_config(
            config,
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            log_level=log_level,
        )
    except ConfigError as exc:
        typer.echo(f"nimbus: {exc}", err=True)
        raise typer.Exit(2) from exc
    serve(cfg)


@app.command()
def version() -> None:
    """Print the nimbus version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("nimbus"))


def main() -> None:
    app()
