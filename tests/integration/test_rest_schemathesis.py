"""Schemathesis against the gateway's own OpenAPI document, in process.

Method: the app on a SQLite file (with a payment, a pending approval and keys already recorded)
is loaded by schemathesis from `/openapi.json`; every operation is exercised with generated
valid and invalid requests, once with an agent key, once with an operator key and once with an
admin key, and every response goes through schemathesis' checks: no server error, documented
status codes, content types and headers, bodies conforming to the document, invalid data
rejected, authentication not ignored. The number of examples per operation is bounded so the
run stays well under three minutes on a 2-core machine.

Left out: `positive_data_acceptance`, because rules the document cannot state (a currency's
decimals, an unknown currency, a reused Idempotency-Key with another body) rightly refuse some
schema-valid requests with 422.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rest_support import POLICY, gateway_warden, make_keys
from schemathesis import Case
from schemathesis.generation.meta import GenerationMode, ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from paywarden import FrozenClock
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.rest import Settings, create_app
from paywarden.testing import example_intent
from support.policies import write_policy
from support.wardens import no_sleep

EXAMPLES_PER_OPERATION = 40

# Built at import: schemathesis reads the document while the tests are collected.
_DIRECTORY = Path(tempfile.mkdtemp(prefix="paywarden-schemathesis-"))
_POLICY_FILE = write_policy(_DIRECTORY, POLICY)
_WARDEN = gateway_warden(
    _DIRECTORY / "gateway.db", FrozenClock(), SandboxRail(sleep=no_sleep), POLICY
)
KEYS = make_keys(_WARDEN)
_WARDEN.pay(example_intent("20.00", idempotency_key="seed-1"))
_WARDEN.authorize(example_intent("500.00"))
APP = create_app(
    Settings(
        database=str(_DIRECTORY / "gateway.db"),
        policy=str(_POLICY_FILE),
        policy_poll_seconds=0,
    ),
    warden=_WARDEN,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# A body past the gateway's size limit is refused with 413 before it is parsed: a rejection too.
schema.config.checks.negative_data_rejection.expected_statuses = [
    *schema.config.checks.negative_data_rejection.expected_statuses,
    "413",
]


@pytest.fixture(scope="module", autouse=True)
def _close_the_warden() -> Iterator[None]:
    yield
    _WARDEN.close()
    shutil.rmtree(_DIRECTORY, ignore_errors=True)


_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same examples in every CI run: a failure is reproducible
    suppress_health_check=list(HealthCheck),
)


def _check(case: Case, role: str) -> None:
    # The role's real key, unless schemathesis made the headers invalid on purpose (a missing
    # or malformed Authorization): putting the key back would turn that case into a valid one.
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    negative_headers = header is not None and header.mode == GenerationMode.NEGATIVE
    case.call_and_validate(
        headers={} if negative_headers else {"Authorization": f"Bearer {KEYS[role]}"},
        excluded_checks=[positive_data_acceptance],
    )


@schema.parametrize()
@_SETTINGS
def test_as_an_agent(case: Case) -> None:
    _check(case, "agent-a")


@schema.parametrize()
@_SETTINGS
def test_as_an_operator(case: Case) -> None:
    _check(case, "operator")


@schema.parametrize()
@_SETTINGS
def test_as_an_admin(case: Case) -> None:
    _check(case, "admin")


def test_the_document_names_every_operation() -> None:
    document = APP.openapi()
    assert document["openapi"].startswith("3.")
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) >= 25
    assert all(operation.get("summary") for operation in operations)
