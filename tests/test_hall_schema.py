"""Property-based run over the hall's OpenAPI description (schemathesis): generated requests, as a
signed-in window clerk and as a village officer, never get a 5xx nor a response that breaks the
documented schema, status codes or content types. Bounded: a few examples per operation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
sys.path.insert(0, str(Path(__file__).parent))
from hall_support import PASSWORDS, seeded_hall  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from examples.hall import create_app  # noqa: E402

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
SECRET = "test-session-secret"


@pytest.fixture(scope="module")
def hall_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    from fastapi.testclient import TestClient

    with seeded_hall("sqlite", tmp_path_factory.mktemp("hall")) as (hall, _):
        app = create_app(hall, SECRET)
        cookies = {}
        for user in ("window1", "village1"):
            c = TestClient(app)
            assert (
                c.post("/api/session", json={"username": user, "password": PASSWORDS[user]}).status_code
                == 200
            )
            cookies[user] = c.cookies["hall_session"]
        yield app, cookies


SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.parametrize("user", ["window1", "village1"])
def test_api_conforms(hall_app: tuple, user: str) -> None:
    app, cookies = hall_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @SETTINGS
        @given(case=operation.as_strategy())
        def conforms(case) -> None:
            case.call_and_validate(cookies={"hall_session": cookies[user]}, checks=CHECKS)

        conforms()
