"""Schemathesis against the running gateway's /openapi.json, as a retail user with quota and as
nobody at all.

Checks on every answer: no 5xx; bodies conform to the schema where it declares one; no error says
anything about the inside (LeakCheck); routes that need a token answer an anonymous caller 401.
After the run, the user's quota moved only by stamps the fuzzer really made (201 answers): the
fuzzer does not know the account's stamping PIN, so there should be none.

Everything goes to the stack on 127.0.0.1. CI runs a few examples per operation and caller;
EMETERAI_FUZZ_EXAMPLES=5000 the long version (docs/security.md).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.hostile import Hostile, fuzz_examples

pytestmark = pytest.mark.e2e

# Routes whose answer does not depend on a token.
PUBLIC_PREFIXES = (
    "/v1/auth/",
    "/v1/notice",
    "/v1/serials/",
    "/v1/verify",
    "/v1/payments/",
    "/v1/dev/",
    "/v1/config",
)

# What the run did that the books must show afterwards.
stamps_made: list[str] = []
started_from: dict[str, int] = {}


@pytest.fixture(scope="module")
def operations(hostile: Hostile) -> list[Any]:
    started_from.update(hostile.balance(hostile.cast.fuzzed))
    loaded = schemathesis.openapi.from_url(f"{hostile.stack.http}/openapi.json")
    # Signing out revokes the token the run authenticates with: every later call would be a 401
    # and the authenticated half of the run would test nothing.
    loaded = loaded.exclude(path="/v1/auth/logout")
    return [result.ok() for result in loaded.get_all_operations()]


FUZZ_SETTINGS = settings(
    max_examples=fuzz_examples(3),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz(operations: list[Any], hostile: Hostile, headers: dict[str, str]) -> list[tuple[Any, Any]]:
    """Every operation with FUZZ_SETTINGS' examples; (case, response) of each call."""
    answered: list[tuple[Any, Any]] = []
    for operation in operations:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            answered.append((case, call_and_check(case, hostile, headers)))

        check()
    return answered


def test_the_http_api_survives_fuzzing_as_a_retail_user(operations: list[Any], hostile: Hostile) -> None:
    answered = fuzz(operations, hostile, dict(hostile.cast.fuzzed))
    assert {case.operation.label for case, _ in answered} == {o.label for o in operations}


def test_the_http_api_survives_fuzzing_without_a_token(operations: list[Any], hostile: Hostile) -> None:
    for case, response in fuzz(operations, hostile, {}):
        if not case.operation.path.startswith(PUBLIC_PREFIXES):
            assert response.status_code == 401, (case.method, case.formatted_path, response.status_code)


def call_and_check(case: Any, hostile: Hostile, headers: dict[str, str]) -> Any:
    # A fuzzed Authorization header would replace the caller's token; the forgery tests try those.
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call(headers=headers, timeout=60)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    status = response.status_code
    if status >= 400:
        hostile.leaks.check(f"{case.method} {case.formatted_path} -> {status}", response.text, sent(case))
    if case.method == "POST" and case.operation.path == "/v1/stamps" and status == 201:
        stamps_made.append(response.json()["id"])
    return response


def sent(case: Any) -> list[str]:
    """Every string the case sends, which an error may quote back."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list | tuple | set):
            for item in value:
                walk(item)

    for part in (case.path_parameters, case.query, case.headers, case.body):
        walk(part)
    # And the path as sent, decoded: what a problem's detail may quote of it.
    found += [urllib.parse.unquote(segment) for segment in case.formatted_path.split("/")]
    return found


def test_the_fuzzed_account_paid_only_for_stamps_it_got(hostile: Hostile) -> None:
    if not started_from:
        pytest.skip("the fuzz run did not run")
    after = hostile.balance(hostile.cast.fuzzed)
    made = len(stamps_made)
    assert after["consumed"] - started_from["consumed"] == made, (started_from, after)
    assert after["held"] == 0
    # Orders the fuzzer opened are unpaid: nothing was bought, and nothing refunded without an order.
    assert after["purchased"] == started_from["purchased"]
    assert after["available"] == started_from["available"] - made
