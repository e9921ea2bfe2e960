"""Property-based fuzzing of both HTTP APIs from their OpenAPI documents (schemathesis).

A bounded number of generated requests per operation, valid and invalid, sent to
the running system: no answer may be a server error, and every answer must be
one the document promises (status, content type, body schema). The operations
are driven through schemathesis' strategies and Hypothesis directly (its pytest
plugin does not run on pytest 9).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.system import new_user

# tus bodies (PATCH /files/{upload_id}) are raw bytes, sent as octet-streams are.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_user(system):
    return new_user(system)


def fuzz(openapi_url: str, headers: dict[str, str]) -> int:
    """Fuzz every operation of the API at ``openapi_url``; return how many requests were sent."""
    schema = schemathesis.openapi.from_url(openapi_url)
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
    return sent


@pytest.mark.parametrize("service", ["gateway", "auth"])
def test_the_api_never_fails_and_keeps_its_promises(system, fuzz_user, service):
    base = system.gateway if service == "gateway" else system.auth
    sent = fuzz(f"{base}/openapi.json", fuzz_user.headers)
    assert sent >= 50
    print(f"{service}: {sent} generated requests, no server error, all as documented")
