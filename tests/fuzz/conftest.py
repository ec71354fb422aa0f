"""Fixtures of the OpenAPI fuzz tests: each service in-process (ASGI, lifespan started)
against the real broker and a SQLite file, its schema loaded for schemathesis, a bounded
and reproducible generation budget, the credentials each case is sent with, and a tally
of the cases tried and failed per service that is printed at the end of the run."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import GenerationMode
from schemathesis.pytest import lazy
from schemathesis.python import asgi

from services.core.settings import PROJECT_ROOT, Settings
from tests.conftest import TEST_ROUTING_TABLE
from tests.credentials import bearer, issue_token

# schemathesis's own default statuses of the check, which the exceptions below extend.
POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429",
                                              "5xx"]

# Examples per operation and phase; with a fixed seed and derandomised generation the same
# cases are tried on every run, so a failure in CI is reproduced locally as it is.
MAX_EXAMPLES = 30
SEED = 20_260_501
FUZZ_CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True,
                   "database": "none",
                   # Unknown query parameters are ignored, as HTTP caches and proxies
                   # expect; unknown body fields are refused (see test_hostile_input).
                   "allow-extra-parameters": False},
    # The body limit is 1 MiB; a request must not wait for a slow broker forever.
    "request-timeout": 30,
    # Every check schemathesis has runs on every operation, with its default statuses:
    # what the schema documents as valid is accepted, what it documents as invalid is
    # refused, so generated clients, fuzzers and the servers agree. The exceptions are
    # rules no schema can say; a rule a schema can say belongs in the schema, not here.
    "operations": [{
        # A configuration file is text whose meaning the schema cannot hold (rules that
        # compile, are boolean and evaluate; a routing table's departments that must be
        # defined, overflow that must not loop, calendars that must open): a file that
        # does not is refused, 422, with the file, line, rule and problem. A simulation
        # takes such files too, and a window that must end before now, after its start.
        # A change sent with If-Match (an upload, a rollback) is put in force only while
        # the version it names is in force, 412 otherwise: that changes with every
        # version, which no schema can say. And schemathesis cannot draw an If-Match
        # its schema takes (an entity tag is quoted; its header values are letters and
        # digits): where a case of its coverage phase needs one, it sends `0`, which
        # is refused, 422 naming `header.If-Match`.
        "include-name": ["PUT /v1/segment-rules", "PUT /v1/routing-table",
                         "POST /v1/segment-rules/versions/{version_id}/rollback",
                         "POST /v1/routing-table/versions/{version_id}/rollback"],
        "checks": {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "412",
                                  "422"]}},
    }, {
        "include-name": ["POST /v1/segment-rules/analysis", "POST /v1/segment-rules/dry-run",
                         "POST /v1/routing-table/dry-run", "POST /v1/simulations"],
        "checks": {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]}},
    }, {
        # A birth date, or a purchase, in the future is refused, 422 naming the field:
        # "the future" moves with the clock, which no schema can say.
        "include-name": ["PUT /v1/customers/{customer_id}",
                         "POST /v1/customers/{customer_id}/purchases"],
        "checks": {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]}},
    }, {
        # A department's credential names a department of the routing table in force,
        # 422 naming `subject` otherwise, as do a report's `department`, a transfer's
        # `from_department` and `/me?department=` (unknown_departments): the table
        # changes with each version in force, which no schema can say. A key's own budget
        # of body bytes is at least 1 MiB a window, 422 naming `byte_rate_limit` otherwise
        # (issued or changed): a pattern could say it only by spelling out each unit's
        # numbers past 1 MiB.
        "include-name": ["POST /v1/credentials", "PATCH /v1/credentials/{credential_id}",
                         "GET /v1/credentials/me", "POST /v1/tickets/{ticket_id}/events",
                         "POST /v1/tickets/{ticket_id}/transfer"],
        "checks": {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]}},
    }, {
        # A webhook URL the sender cannot parse is refused, 422 naming `url`: its pattern
        # says all it can (labels, IPv4 addresses, ports), but not an xn-- label's punycode.
        "include-name": ["POST /v1/webhooks/endpoints",
                         "PATCH /v1/webhooks/endpoints/{platform}"],
        "checks": {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]}},
    }, {
        # Any bytes are text for a CSV or JSON Lines body, so no body is "invalid" on
        # the wire; bad rows come back in the report with their line and reason.
        "include-name": ["POST /v1/customers/import", "POST /v1/purchases/import"],
        "checks": {"negative_data_rejection": {"enabled": False}},
    }],
}


@dataclass
class Tally:
    """Cases tried and failed per service, and which operations failed."""

    tried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    operations: dict[str, set[str]] = field(default_factory=dict)
    failed_operations: dict[str, set[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{service}: {len(self.operations[service])} operations fuzzed,"
            f" {self.tried[service]} cases tried, {self.failed[service]} failures"
            + (f" in {', '.join(sorted(self.failed_operations[service]))}"
               if self.failed_operations.get(service) else "")
            for service in sorted(self.tried)
        ]


TALLY = Tally()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY.tried:
        terminalreporter.section("OpenAPI fuzzing (schemathesis)")
        for line in TALLY.lines():
            terminalreporter.write_line(line)


@pytest.fixture
def fuzz_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings of a fuzzed service: its own store, and copies of the configuration
    files, since a fuzzed upload that happens to be valid is written to the file."""
    routing_table = tmp_path / "routing.yaml"
    segment_rules = tmp_path / "segments.yaml"
    shutil.copyfile(TEST_ROUTING_TABLE, routing_table)
    shutil.copyfile(PROJECT_ROOT / "config" / "segments.yaml", segment_rules)
    return Settings(kafka_bootstrap_servers=kafka_bootstrap,
                    database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
                    routing_table_file=routing_table, segment_rules_file=segment_rules,
                    log_format="text", log_level="WARNING",
                    # The fuzzer is no abusive platform: it must see answers, not 429s.
                    intake_rate_limit="100000/second", intake_byte_rate_limit="1GiB/second")


def load_schema(app: FastAPI) -> Iterator[schemathesis.BaseSchema]:
    """The app's OpenAPI schema; loading it starts the app's lifespan (broker clients,
    migrations, stages), which is stopped again after the test."""
    config = schemathesis.Config.from_dict(FUZZ_CONFIG)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    finally:
        asgi.shutdown_lifespans()


@dataclass(frozen=True)
class Credentials:
    """The one place where a fuzzed case gets its `Authorization` header: a platform's
    token for posting tickets, an admin's for everything else."""

    admin: str
    platform: str

    def headers_for(self, case: schemathesis.Case) -> dict[str, str]:
        posts_a_ticket = case.method.upper() == "POST" and case.path == "/v1/tickets"
        return bearer(self.platform if posts_a_ticket else self.admin)


@pytest.fixture
def credentials(fuzz_settings: Settings) -> Credentials:
    async def issue() -> Credentials:
        database_url = fuzz_settings.database_url
        return Credentials(admin=await issue_token(database_url, "admin"),
                           platform=await issue_token(database_url, "platform", "fuzzer"))

    return asyncio.run(issue())


def own_idempotency_key(case: schemathesis.Case) -> dict[str, str]:
    """A fresh Idempotency-Key for a valid ticket that sends one. A key used before for
    another ticket is refused (422), a rule about earlier requests that no schema can
    say; the generated keys repeat across cases with different tickets."""
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if positive and "Idempotency-Key" in (case.headers or {}):
        return {"Idempotency-Key": f"fuzz-{uuid.uuid4().hex}"}
    return {}


def fuzz_every_operation(service: str, schema: schemathesis.BaseSchema,
                         credentials: Credentials, subtests: pytest.Subtests) -> None:
    """Run schemathesis's Hypothesis test (explicit examples, coverage of boundaries and
    fuzzing, valid and invalid input) of every operation, each as a subtest.

    schemathesis's own pytest plugin cannot do this here: its fixture-loaded schemas set
    `Function._nodeid`, which pytest 9.2 no longer has; `get_all_tests` is the function
    that plugin builds its tests with."""

    def fuzz(case: schemathesis.Case) -> None:
        TALLY.tried[service] += 1
        try:
            case.call_and_validate(headers={**credentials.headers_for(case),
                                            **own_idempotency_key(case)})
        except BaseException:
            TALLY.failed[service] += 1
            TALLY.failed_operations.setdefault(service, set()).add(case.operation.label)
            raise

    operations = TALLY.operations.setdefault(service, set())
    for built in lazy.get_all_tests(schema=schema, test_func=fuzz, settings=None,
                                    given_kwargs=None):
        operation, test = built.ok()  # an invalid schema fails here, as it should
        operations.add(operation.label)
        with subtests.test(msg=operation.label):
            test()
