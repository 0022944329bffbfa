"""Records the store tests build functions from."""

from __future__ import annotations

import uuid

from nimbus.models import LATEST, FunctionVersion

NOW = "2026-01-01T00:00:00.000+0000"
LAYER_PREFIX = "arn:aws:lambda:us-east-1:000000000000:layer:"


def arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def latest(name: str, sha: str = "ab" * 32, **kw: object) -> FunctionVersion:
    """A function's $LATEST as CreateFunction would store it."""
    return FunctionVersion(
        function_name=name,
        version=LATEST,
        runtime="python3.12",
        handler="app.handler",
        role="arn:aws:iam::000000000000:role/r",
        code_sha256=sha,
        code_size=10,
        last_modified=NOW,
        revision_id=str(uuid.uuid4()),
        **kw,
    )
