"""The ``nimbus`` command line: one module per command family, one HTTP client."""

from nimbus.cli.main import app, main

__all__ = ["app", "main"]
