"""Putting a dev project's functions on the dev server, through the Lambda API: create
or update the code, give each a function URL, and for ``--debug`` attach the debugpy
layer with ``NIMBUS_DEBUGPY`` (the guest runtime's hook listens there)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import httpx

from nimbus.dev.project import DevFunction, debugpy_layer, package

FUNCTIONS = "/2015-03-31/functions"
ROLE = "arn:aws:iam::000000000000:role/nimbus-dev"  # stored, not assumed: nimbus has no IAM
DEBUG_LAYER = "nimbus-dev-debugpy"
DEBUG_LAYER_DESCRIPTION = "debugpy, for nimbus dev --debug"
DEBUG_TIMEOUT = 900  # a paused breakpoint must not time the invocation out


class DeployError(Exception):
    """The server refused a deploy; the message is its error."""


@dataclass(frozen=True)
class Debugging:
    """``--debug FN``: where its debugpy listens."""

    function: str
    host: str
    port: int

    def variables(self) -> dict[str, str]:
        """The debugged function's environment: where the guest's hook makes debugpy listen."""
        return {
            "NIMBUS_DEBUGPY": f"{self.host}:{self.port}",
            # pydevd's warning about frozen stdlib modules concerns stdlib breakpoints.
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }


class Deployer:
    """The dev server's Lambda API, for the calls ``nimbus dev`` makes."""

    def __init__(self, endpoint: str, auth: Any = None) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(base_url=endpoint, auth=auth, timeout=120)
        self.layer_arn: str | None = None

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, allow: tuple[int, ...] = (),
              **kwargs: Any) -> httpx.Response:
        answer = self.http.request(method, path, **kwargs)
        if answer.status_code >= 400 and answer.status_code not in allow:
            kind = answer.headers.get("x-amzn-errortype", str(answer.status_code))
            try:
                body = answer.json()
                message = body.get("message") or body.get("Message") or answer.text
            except ValueError:
                message = answer.text
            raise DeployError(f"{kind}: {message}")
        return answer

    def deploy(self, fn: DevFunction, debugging: Debugging | None = None) -> float:
        """Create the function or update its code; the seconds it took."""
        start = time.perf_counter()
        code = base64.b64encode(package(fn.folder)).decode()
        debug = debugging is not None and debugging.function == fn.name
        found = self._call("GET", f"{FUNCTIONS}/{fn.name}/configuration", allow=(404,))
        if found.status_code == 404:
            body: dict[str, Any] = {
                "FunctionName": fn.name, "Runtime": fn.runtime, "Handler": fn.handler,
                "Role": ROLE, "Code": {"ZipFile": code},
                **self._debug_settings(debugging if debug else None),
            }
            self._call("POST", f"{FUNCTIONS}", json=body)
            if debug:
                # One environment: a second one could not listen on the same port.
                self._call("PUT", f"/2017-10-31/functions/{fn.name}/concurrency",
                           json={"ReservedConcurrentExecutions": 1})
        else:
            self._call("PUT", f"{FUNCTIONS}/{fn.name}/code", json={"ZipFile": code})
        return time.perf_counter() - start

    def _debug_settings(self, debugging: Debugging | None) -> dict[str, Any]:
        if debugging is None:
            return {}
        if self.layer_arn is None:
            layer = base64.b64encode(debugpy_layer()).decode()
            made = self._call("POST", f"/2018-10-31/layers/{DEBUG_LAYER}/versions",
                              json={"Content": {"ZipFile": layer},
                                    "Description": DEBUG_LAYER_DESCRIPTION})
            self.layer_arn = str(made.json()["LayerVersionArn"])
        return {
            "Layers": [self.layer_arn],
            "Timeout": DEBUG_TIMEOUT,
            "Environment": {"Variables": debugging.variables()},
        }

    def url(self, name: str) -> str:
        """The function's URL (AuthType NONE), created when it has none."""
        path = f"/2021-10-31/functions/{name}/url"
        made = self._call("POST", path, json={"AuthType": "NONE"}, allow=(409,))
        if made.status_code == 409:
            made = self._call("GET", path)
        return str(made.json()["FunctionUrl"])

    def logs(self, name: str, since_ms: int) -> list[dict[str, Any]]:
        """The function's invocation logs at or after ``since_ms``, oldest first."""
        answer = self._call("GET", f"/_nimbus/functions/{name}/logs",
                            params={"SinceMs": since_ms, "Limit": 1000}, allow=(404,))
        return [] if answer.status_code == 404 else list(answer.json()["Logs"])
