"""Replayed recordings: reserved concurrency (Put/Get/DeleteFunctionConcurrency) and the
account's limits it is checked against."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_recordings import Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()


def create(r: Replay) -> str:
    name = f"lambda_func-{uuid.uuid4().hex[:8]}"
    r.create_function(name)
    return name


@SCENARIOS.add("TestLambdaReservedConcurrency::test_function_concurrency_exceptions")
def function_concurrency_exceptions(r: Replay) -> None:
    put = r.lam.put_function_concurrency
    r.error("put_function_concurrency_with_function_name_doesnotexist", put,
            FunctionName="doesnotexist", ReservedConcurrentExecutions=1)  # fmt: skip
    r.error("put_function_concurrency_with_function_name_doesnotexist_and_invalid_concurrency",
            put, FunctionName="doesnotexist", ReservedConcurrentExecutions=0)  # fmt: skip
    name = create(r)
    latest = r.lam.get_function_configuration(FunctionName=name, Qualifier="$LATEST")
    r.error("put_function_concurrency_with_qualified_arn", put,
            FunctionName=latest["FunctionArn"], ReservedConcurrentExecutions=0)  # fmt: skip


@SCENARIOS.add("TestLambdaReservedConcurrency::test_function_concurrency_limits")
def function_concurrency_limits(r: Replay) -> None:
    name = create(r)
    limit = r.lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"]
    put = r.lam.put_function_concurrency
    r.error("put_function_concurrency_account_limit_exceeded", put, FunctionName=name,
            ReservedConcurrentExecutions=limit + 1)  # fmt: skip
    r.error("put_function_concurrency_below_unreserved_min_value", put, FunctionName=name,
            ReservedConcurrentExecutions=limit)  # fmt: skip


@SCENARIOS.add("TestLambdaReservedConcurrency::test_function_concurrency")
def function_concurrency(r: Replay) -> None:
    name = create(r)
    lam = r.lam
    r.match("put_function_concurrency_with_reserved_0",
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0))
    r.match("put_function_concurrency_with_reserved_1",
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1))
    r.match("get_function_concurrency", lam.get_function_concurrency(FunctionName=name))
    r.match("delete_response", lam.delete_function_concurrency(FunctionName=name))
    r.match("get_function_concurrency_after_delete",
            lam.get_function_concurrency(FunctionName=name))  # fmt: skip
    # The most a function may reserve: all but the account's unreserved minimum (100).
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    most = lam.put_function_concurrency(FunctionName=name,
                                        ReservedConcurrentExecutions=unreserved - 100)
    assert most["ReservedConcurrentExecutions"] == unreserved - 100
    lam.delete_function_concurrency(FunctionName=name)


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
