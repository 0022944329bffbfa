"""``nimbus dlq``: async events that could not be processed, listed and re-driven."""

from __future__ import annotations

from typing import Annotated

import typer

from nimbus.cli.client import ENDPOINT, JsonOption, call, print_json, show, table

dlq = typer.Typer(help="Dead letters: async events that could not be processed.")


@dlq.command("ls")
def dlq_list(
    function: Annotated[str | None, typer.Option(help="Only this function")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this DeadLetterConfig queue")] = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """List dead letters (not yet re-driven; --json: whole, payloads included)."""
    params = {k: v for k, v in {"FunctionName": function, "Queue": queue}.items() if v}
    letters = call("GET", f"{endpoint}/_nimbus/dead-letters", params=params).json()
    if as_json:
        print_json(letters["DeadLetters"])
        return
    made = table("id", "function", "condition", "attempts", "request id", "payload")
    for letter in letters["DeadLetters"]:
        made.add_row(
            str(letter["id"]),
            letter["function_name"],
            letter["condition"],
            str(letter["attempts"]),
            letter["request_id"],
            letter["payload"][:60],  # a glimpse: --json has it whole
        )
    show(made)


@dlq.command("redrive")
def dlq_redrive(
    ids: Annotated[list[int], typer.Argument(help="Dead letter ids (see `nimbus dlq ls`)")],
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Queue dead letters again, as new async invocations (each one's new request id;
    --json: [{"Id", "RequestId"}])."""
    done = []
    for letter_id in ids:
        answer = call("POST", f"{endpoint}/_nimbus/dead-letters/{letter_id}/redrive").json()
        done.append({"Id": letter_id, "RequestId": answer["RequestId"]})
        if not as_json:
            typer.echo(f"{letter_id}: re-driven as {answer['RequestId']}")
    if as_json:
        print_json(done)
