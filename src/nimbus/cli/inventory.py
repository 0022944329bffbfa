"""``nimbus ls`` and ``nimbus rm``: the functions there are, listed and removed, through
the Lambda API (ListFunctions, DeleteFunction with a version, DeleteAlias)."""

from __future__ import annotations

from typing import Annotated

import typer

from nimbus.cli.client import (
    ENDPOINT,
    FUNCTIONS,
    MEANINGFUL,
    JsonOption,
    call,
    fail,
    no_function,
    pages,
    print_json,
    say,
    segment,
    show,
    table,
)


def list_functions(as_json: JsonOption = False, endpoint: str = ENDPOINT) -> None:
    """List functions: name, runtime, handler, memory, timeout (--json: ListFunctions'
    FunctionConfiguration objects, whole)."""
    functions = list(
        pages(f"{endpoint}{FUNCTIONS}/", "Functions", "Marker", "NextMarker", exits=MEANINGFUL)
    )
    if as_json:
        print_json(functions)
        return
    # Few columns, short values: in 80 columns a name of up to ~30 characters stays on one
    # line, a longer one is folded, never cut (--json has LastModified and the rest).
    made = table("name", "runtime", "handler", "memory", "timeout")
    for f in functions:
        made.add_row(
            f["FunctionName"],
            f.get("Runtime", "-"),
            f.get("Handler", "-"),
            f"{f['MemorySize']} MB",
            f"{f['Timeout']} s",
        )
    show(made)


def remove(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: Annotated[
        str | None,
        typer.Option(help="Delete only this version (a number) or alias, not the function"),
    ] = None,
    endpoint: str = ENDPOINT,
) -> None:
    """Delete a function (all its versions, aliases, URLs and logs' owner), or only one of
    its versions or aliases with --qualifier."""
    base = f"{endpoint}{FUNCTIONS}/{segment(name)}"
    if qualifier == "$LATEST":
        fail(f"$LATEST cannot be deleted alone: `nimbus rm {name}` deletes the function", 2)
    if qualifier is None:
        url, params, what = base, None, f"function {name}"
    elif qualifier.isdigit():
        url, params, what = base, {"Qualifier": qualifier}, f"version {qualifier} of {name}"
    else:
        url, params, what = (f"{base}/aliases/{segment(qualifier)}", None,
                             f"alias {qualifier} of {name}")
    # Lambda answers a missing alias with 204 too: check first, so a typo is reported.
    if qualifier is not None and not qualifier.isdigit():
        found = call("GET", url, allow=(404,), exits=MEANINGFUL)
        if found.status_code == 404:
            no_function(found, MEANINGFUL.refused)
    gone = call("DELETE", url, params=params, allow=(404,), exits=MEANINGFUL)
    if gone.status_code == 404:
        no_function(gone, MEANINGFUL.refused)
    say(f"deleted {what}")
