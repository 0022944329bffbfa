"""The oracle of Lambda fidelity: AWS's own answers, recorded, replayed against nimbus.

``recordings/lambda_api.json`` holds responses LocalStack recorded against real AWS
(origin, commit and dates in the file). Each ``test_recordings_<family>.py`` module
replays its scenarios, the same calls in the same order with boto3, against a live
nimbus, and compares every field of every response with ``Matcher`` (placeholders bound
consistently, no key missing or extra). A recorded response is never skipped silently:
each is matched, or skipped with a reason (``Replay.skip``), and a scenario fails if one
is left over.

Where nimbus answers differently on purpose, the difference is listed, with its reason,
in ``test_recordings_differences.py`` (the README's "Differences from Lambda" says the
same): it rewrites the recording into nimbus' answer before the comparison, so the rest
of the response is still compared field for field. The scenarios not replayed are listed
there too.

Only the HTTP status is compared of ``ResponseMetadata`` (the recordings emptied the
headers, and request ids differ by nature).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from nimbus.sandbox import catalog
from tests.api.test_recordings_differences import DIFFERENCE, DIFFERENCES, walk
from tests.api.test_recordings_matcher import ANY, Matcher
from tests.conftest import ROLE, make_zip, python_runtime
from tests.nimbus_process import NimbusProcess

RECORDINGS = Path(__file__).parent / "recordings" / "lambda_api.json"
ACCOUNT, REGION = "000000000000", "us-east-1"  # what the test servers serve

ECHO = make_zip({"index.py": "def handler(event, context):\n    return event\n"})
VERSION = make_zip({"index.py": "def handler(event, context):\n    return 'version'\n"})


def echo_package(tag: str) -> bytes:
    """An echo function's package of its own: LocalStack's helpers zipped the handler anew
    for every function, so two functions never shared a CodeSha256 in the recordings."""
    source = f"# {tag}\ndef handler(event, context):\n    return event\n"
    return make_zip({"handler.py": source, "index.py": source})


@cache
def recordings() -> dict[str, Any]:
    with RECORDINGS.open() as f:
        data: dict[str, Any] = json.load(f)["scenarios"]
    return data


def expected(recorded: Any, substitutions: dict[str, str]) -> Any:
    """The recording as nimbus should answer it: a deep copy, rewritten."""
    copy = json.loads(json.dumps(recorded))
    for difference in DIFFERENCES:
        if difference.everywhere:
            walk(copy, difference.rewrite)
    return _substitute(copy, substitutions)


def _substitute(node: Any, substitutions: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, substitutions) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, substitutions) for v in node]
    if isinstance(node, str):
        return substitutions.get(node, node)
    return node


# -- replaying -----------------------------------------------------------------------


class Replay:
    """One scenario being replayed: the recorded responses, a boto3 client of the live
    server, and the matcher that keeps the scenario's placeholders."""

    def __init__(self, name: str, server: NimbusProcess) -> None:
        self.name = name
        self.server = server
        self.lam = server.client()
        self.recorded: dict[str, Any] = recordings()[name]["recorded-content"]
        self.matcher = Matcher(ACCOUNT, REGION)
        self.unused = list(self.recorded)
        self.problems: list[str] = []
        self.substitutions: dict[str, str] = {}
        self.any_value_keys: dict[str, str] = {}
        self.declared: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self.role = ROLE

    # what the scenario declares ------------------------------------------------------

    def runtime(self, recorded: str) -> str:
        """The runtime to use where the scenario used ``recorded``: itself when this host
        has it, else the host's Python (and the recording is read with that name)."""
        if recorded in catalog.names():
            return recorded
        self.substitutions[recorded] = python_runtime()
        return python_runtime()

    def any_value(self, key: str, replacement: str) -> None:
        """LocalStack replaced ``key``'s values by ``replacement`` without tracking them
        (a ``key_value(..., reference_replacement=False)`` transformer)."""
        self.any_value_keys[key] = replacement

    def differ(
        self, key: str, name: str, rewrite: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """The recorded response ``key`` shows the documented difference ``name``: read it
        through the difference's rewrite (or ``rewrite``, for what is specific to it)."""
        difference = DIFFERENCE[name]
        assert not difference.everywhere, f"{name} applies everywhere already"
        self.declared.setdefault(key, []).append(rewrite or difference.rewrite)

    def replaced(self, old: str, new: str) -> Callable[[dict[str, Any]], None]:
        """A rewrite reading every string with ``old`` replaced by ``new`` (for ``differ``,
        where nimbus words an answer differently)."""

        def rewrite(node: dict[str, Any]) -> None:
            for key, value in node.items():
                if isinstance(value, str):
                    node[key] = value.replace(old, new)

        return rewrite

    # comparing ----------------------------------------------------------------------

    def match(self, key: str, actual: Any) -> Any:
        """Compare a response with the recorded one named ``key``; return the response."""
        want = self._take(key)
        got = observed(actual, want)
        self.problems += [f"{key}: {p}" for p in self.matcher.compare(want, got, "$")]
        return actual

    def error(self, key: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Make a call that must fail as recorded; compare the error response."""
        try:
            result = call(*args, **kwargs)
        except ClientError as exc:
            status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            assert status < 500, f"{key}: nimbus failed with {status}: {exc.response}"
            return self.match(key, exc.response)
        except ParamValidationError as exc:  # botocore refused it before sending
            return self.match(key, str(exc))
        self.problems.append(f"{key}: recorded an error, the call succeeded: {result!r}")
        self._take(key)
        return result

    def skip(self, key: str, reason: str) -> None:
        """Leave a recorded response uncompared, saying why."""
        assert reason
        self._take(key)

    def finish(self) -> None:
        problems = list(self.problems)
        if self.declared:
            problems.append(f"differences declared for responses never replayed: {self.declared}")
        if self.unused:
            problems.append(f"recorded but never replayed: {self.unused}")
        assert not problems, f"{self.name} differs from AWS:\n  " + "\n  ".join(problems)

    def _take(self, key: str) -> Any:
        assert key in self.unused, f"{key} is not a recorded response left to replay"
        self.unused.remove(key)
        want = expected(self.recorded[key], self.substitutions)
        for rewrite in self.declared.pop(key, []):
            walk(want, rewrite)
        return walk(want, self._any_values)

    def _any_values(self, node: dict[str, Any]) -> None:
        for key, replacement in self.any_value_keys.items():
            if node.get(key) == replacement:
                node[key] = ANY

    # LocalStack's helpers, as the scenarios used them -------------------------------

    def create_function_aws(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """CreateFunction as LocalStack's ``create_lambda_function_aws`` fixture sends it:
        the echo handler, and the caller's arguments."""
        response: dict[str, Any] = self.lam.create_function(
            FunctionName=name,
            Handler="index.handler",
            Code={"ZipFile": ECHO},
            PackageType="Zip",
            Role=self.role,
            Runtime=self.runtime("python3.12"),
            **kwargs,
        )
        return response

    def create_function(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """CreateFunction as LocalStack's ``create_lambda_function`` fixture sends it, in
        its wrapper: Timeout 30, empty Environment and Tags, handler.handler."""
        request: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": self.runtime("python3.12"),
            "Handler": "handler.handler",
            "Role": self.role,
            "Code": {"ZipFile": echo_package(name)},
            "Timeout": 30,
            "Environment": {"Variables": {}},
            "Tags": {},
        }
        request.update(kwargs)
        response = self.lam.create_function(**request)
        return {"CreateFunctionResponse": response, "CreateEventSourceMappingResponse": None}


def observed(actual: Any, recorded: Any) -> Any:
    """``actual`` reduced to what the recording kept of a response: ResponseMetadata only
    if recorded, and then only its status (and the emptied headers)."""
    if isinstance(actual, str) and actual.startswith("{"):
        try:  # LocalStack's snapshots keep a JSON document (a policy) as the object it is
            return json.loads(actual)
        except ValueError:
            return actual
    if not isinstance(actual, dict):
        return actual
    result = {k: v for k, v in actual.items() if k != "ResponseMetadata"}
    want = recorded.get("ResponseMetadata") if isinstance(recorded, dict) else None
    if want is not None and "ResponseMetadata" in actual:
        meta = {"HTTPStatusCode": actual["ResponseMetadata"]["HTTPStatusCode"]}
        if "HTTPHeaders" in want:
            meta["HTTPHeaders"] = {}
        result["ResponseMetadata"] = meta
        for key in set(want) - {"HTTPStatusCode", "HTTPHeaders"}:
            want.pop(key)  # e.g. a RequestId the recording kept by accident
    for key, value in result.items():
        result[key] = observed(value, recorded.get(key) if isinstance(recorded, dict) else None)
    return result


class Scenarios:
    """A family's replays by recorded name, for ``pytest.mark.parametrize``."""

    def __init__(self) -> None:
        self.replays: dict[str, Callable[[Replay], None]] = {}

    def add(self, name: str) -> Callable[[Callable[[Replay], None]], Callable[[Replay], None]]:
        def register(replay: Callable[[Replay], None]) -> Callable[[Replay], None]:
            assert name in recordings(), f"{name} is not in {RECORDINGS.name}"
            self.replays[name] = replay
            return replay

        return register

    def names(self) -> list[str]:
        return list(self.replays)

    def replay(self, name: str, server: NimbusProcess) -> None:
        replay = Replay(name, server)
        self.replays[name](replay)
        replay.finish()


def families() -> Iterator[tuple[str, Scenarios]]:
    """Every family module's scenarios (imported here, so that the count is checked)."""
    import importlib

    for path in sorted(Path(__file__).parent.glob("test_recordings_*.py")):
        module = importlib.import_module(f"tests.api.{path.stem}")
        scenarios = getattr(module, "SCENARIOS", None)
        if isinstance(scenarios, Scenarios):
            yield path.stem.removeprefix("test_recordings_"), scenarios


def test_every_recording_is_replayed_once() -> None:
    replayed = [name for _, scenarios in families() for name in scenarios.names()]
    assert sorted(replayed) == sorted(recordings()), "recordings and replays differ"
    assert len(replayed) == len(set(replayed))
