"""Fixtures of the SNS tests: a live server per module (``SERVER_ENV`` settings, as in
tests/api), its SNS, SQS and Lambda clients, and an HTTP endpoint that records what SNS
posts to it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import live_server
from tests.nimbus_process import NimbusProcess


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NimbusProcess]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    env = getattr(request.module, "SERVER_ENV", {})
    with live_server(tmp_path_factory.mktemp(name) / "data", env) as proc:
        yield proc


@pytest.fixture
def sns(server: NimbusProcess) -> Any:
    return server.client("sns")


@pytest.fixture
def sqs(server: NimbusProcess) -> Any:
    return server.client("sqs")


@pytest.fixture
def lam(server: NimbusProcess) -> Any:
    return server.client()


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: str


class Endpoint:
    """An http endpoint in the test process: records every POST; answers 503 to the
    first ``fail_first`` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[Post] = []
        self.fail_first = fail_first
        self.failed = 0
        self._cond = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with endpoint._cond:
                    if endpoint.failed < endpoint.fail_first:
                        endpoint.failed += 1
                        self.send_response(503)
                        self.end_headers()
                        endpoint._cond.notify_all()
                        return
                    endpoint.posts.append(Post(self.path, dict(self.headers.items()), body))
                    endpoint._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sns"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_until(self, predicate: Callable[[list[Post]], bool], timeout: float = 60
                   ) -> list[Post]:  # fmt: skip
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.posts), timeout):
                raise AssertionError(f"endpoint got {len(self.posts)} posts: {self.posts}")
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def receive_all(sqs: Any, url: str, count: int, timeout: float = 60) -> list[dict]:
    """``count`` messages from the queue (long polls; fails after ``timeout``)."""
    return receive_until(sqs, url, lambda got: len(got) >= count, timeout)


def receive_until(
    sqs: Any, url: str, enough: Callable[[list[dict]], bool], timeout: float = 60
) -> list[dict]:
    """Messages from the queue (each deleted once received) until ``enough`` of them."""
    import time

    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not enough(got):
        assert time.monotonic() < deadline, f"got {len(got)} messages: {got[:20]}"
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
            MessageAttributeNames=["All"],
        )  # fmt: skip
        for message in answer.get("Messages", []):
            got.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got
