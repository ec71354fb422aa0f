"""The defaults and the ranges README's Configuration table gives are the settings' own,
and the limits README states as numbers (not settings) are the constants' values: a
change to either shows here, to be said in README too."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devtools import kafka_broker
from services.core import (
    at_start,
    conditions,
    config_files,
    credential_cache,
    durations,
    http,
    http_answers,
    kafka,
    language_tags,
    leases,
    live_config,
    moments,
    pipeline,
    report_client,
    report_turns,
    request_bodies,
    serve,
    settings,
    tickets,
    transactional_publisher,
    versions,
)
from services.core.settings import Settings
from services.departments import retries
from services.metrics import exporter
from services.metrics import store as metrics_store
from services.router import bootstrap, clock_watch, intake_policy, overflow, ticket_ids, worker
from services.router.service import verdicts
from services.segmenter import rules_file
from services.simulator import summary
from services.webhooks import lookups, outbox_store

README = Path(__file__).resolve().parents[2] / "README.md"


def configuration_rows() -> list[tuple[list[str], list[str], bool]]:
    """Each row of the Configuration table: its variables, its defaults as written, and
    whether the defaults are written alone (not within words: "SQLite file `...`")."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `") or len(cells) < 3:
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_*]*)`", cells[0])
        written = cells[1].split("(")[0]
        defaults = re.findall(r"`([^`]*)`", written)
        alone = not re.sub(r"`[^`]*`|[, ]", "", written)
        rows.append((names, defaults, alone))
    return rows


def as_documented(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Path):
        return value.relative_to(settings.PROJECT_ROOT).as_posix()
    return getattr(value, "value", value)


def documented(text: str, like: Any) -> Any:
    if isinstance(like, float):
        return float(text)
    if isinstance(like, list | tuple | dict):
        return type(like)(json.loads(text))
    return text


def test_every_default_the_table_gives_is_the_settings_own() -> None:
    compared = []
    for names, defaults, alone in configuration_rows():
        fields = [name.lower() for name in names]
        if len(fields) != len(defaults) or not all(f in Settings.model_fields for f in fields):
            continue  # no default written (unset, none), a family of variables, a template
        for field, written in zip(fields, defaults, strict=True):
            if re.search(r"[A-Z]{2,}_[A-Z]", written):
                continue  # a template of other settings (ROUTER_URL from ROUTER_PORT)
            own = as_documented(Settings.model_fields[field].get_default(
                call_default_factory=True))
            if alone:
                assert documented(written, own) == own, field
            else:  # within words: a part of the default
                assert written in str(own), field
            compared.append(field)
    assert len(compared) >= 45, compared  # the table as a whole, not a few rows of it


# Each limit: README's words for it (found in README as written), the code's value, and
# the number those words say.
LIMITS = [
    ("up to 5 minutes from the router's", moments.CLOCK_SKEW, timedelta(minutes=5)),
    ("(at most 10 s a time)", retries.LONGEST_WAIT_SECONDS, 10.0),
    ("no try starts after 60 s", retries.GIVE_UP_AFTER_SECONDS, 60.0),
    ("for up to two minutes (`services/core/report_client.py`",
     report_client.GIVE_UP_AFTER_SECONDS, 120.0),
    ("a transient failure retried at most 5 times", pipeline.MAX_ATTEMPTS, 5),
    ("with backoff (up to 5 s)", pipeline.MAX_RETRY_PAUSE_SECONDS, 5.0),
    ("a stage's 30 s transaction limit", settings.STAGE_TRANSACTION_SECONDS, 30.0),
    ("with the 2 s a close may take", settings.STORE_CLOSE_SECONDS, 2.0),
    ("checks the store every 5 seconds", live_config.CHECK_SECONDS, 5.0),
    ("holds at most 256 KiB (`CONFIG_MAX_BYTES`", config_files.CONFIG_MAX_BYTES, 262_144),
    ("at most 1,000 rules\n(`rules_file.MAX_RULES`)", rules_file.MAX_RULES, 1000),
    ("1,000 a transaction", outbox_store.REPLAY_CHUNK, 1000),
    ("the 500 dead-lettered longest ago", outbox_store.LISTED_AT_MOST, 500),
    ("`limit` of 1-500", outbox_store.LISTED_AT_MOST, 500),
    ("a report reads it a page of 1,000 timelines at a time", metrics_store.PAGE_ROWS, 1000),
    ("asks whether its caller is still there every second",
     report_turns.GONE_POLL_SECONDS, 1.0),
    ("each started 250 ms after the one before", lookups.NEXT_ADDRESS_AFTER_SECONDS, 0.25),
    ("a number or a date of at most 187 characters", versions.MAX_LABEL, 187),
    ("or 4 MiB of records", transactional_publisher.MAX_TRANSACTION_BYTES, 4 * 1024 * 1024),
    ("(500 requests, or", transactional_publisher.MAX_REQUESTS_PER_TRANSACTION, 500),
    ("a `reason` of 1-200 characters", tickets.MAX_REASON, 200),
    # Delivery guarantees, Reliability and security:
    ("a UUID of version 7 with a 12-bit mark", ticket_ids._MARK_BITS, 12),
    ("if the intake issued that id in the last 7 days", verdicts.ON_ITS_WAY_FOR,
     timedelta(days=7)),
    ("(up to 5 s once an attempt at a partition's share", worker.CLAIM_WAIT_SECONDS, 5.0),
    ("1 s apart doubling to 5 s", (at_start.BACKOFF.first, at_start.BACKOFF.longest),
     (1.0, 5.0)),
    ("(10 s a bootstrap server at most)", kafka.REACH_SECONDS, 10.0),
    ("leaves the stages 64 KiB for what they add", tickets.STAGE_HEADROOM_BYTES, 64 * 1024),
    ("given at most 5 s (past that, as in an outage)", credential_cache.READ_SECONDS, 5.0),
    ("Request bodies are limited to 1 MiB", inspect.signature(http.install).parameters[
        "max_body_bytes"].default, 1024 * 1024),  # no service passes its own
    ("A 422 names at most 100 problems", http_answers.MAX_FIELD_ERRORS, 100),
    ("takes more than 5 ms of CPU on one of those largest contexts, or the rules up to it"
     " more\nthan 100 ms together", (conditions.CONDITION_CPU_MAX_SECONDS,
                                     conditions.CONDITIONS_CPU_MAX_SECONDS), (0.005, 0.1)),
    ("a body of more than 100 fields", request_bodies.MAX_FIELDS, 100),
    ("text\nattributes over 1,000 characters", tickets.MAX_ATTRIBUTE_TEXT, 1000),
    ("any case, at most 64 characters", language_tags.MAX_LENGTH, 64),
    ("valid for three\nof its intervals and at least 30 s",
     (leases.INTERVALS_PER_LEASE, leases.MIN_LEASE_SECONDS), (3, 30.0)),
    ("Once it holds 1,000 (`TRACE_STEPS_MAX`", intake_policy.TRACE_STEPS_MAX, 1000),
    ("past 2,000 (`TRACE_STEPS_CEILING`", intake_policy.TRACE_STEPS_CEILING, 2000),
    ("keeps the last 500 event ids", intake_policy.LATER_REPORTS_KEPT, 500),
    ("and checked again 15 minutes\n  later", clock_watch.CHECK_AGAIN_AFTER_FAILURE,
     timedelta(minutes=15)),
    ("in every department with at least 100 tickets", summary.SMALLEST_COMPARED, 100),
    ("whole numbers from 1 to 1,000,000,000", overflow.LARGEST_MAXIMUM, 1_000_000_000),
    ("when it was routed,\n  1 s to 366 d", (durations.SHORTEST, durations.LONGEST),
     (timedelta(seconds=1), timedelta(days=366))),
    # Kafka, Running with Docker, Running on Kubernetes:
    ("The broker is real Apache Kafka **4.0.2**", kafka_broker.kafka_version(), "4.0.2"),
    ("aiokafka 0.14 works\nagainst it",
     importlib.metadata.version("aiokafka").rsplit(".", 1)[0], "0.14"),
    ("Each of our services gets a minute to stop after SIGTERM", serve.STOP_GRACE_SECONDS,
     60),
]


@pytest.mark.parametrize(("words", "value", "number"), LIMITS,
                         ids=[words for words, _, _ in LIMITS])
def test_a_limit_readme_states_as_a_number_is_the_codes(words: str, value: Any,
                                                        number: Any) -> None:
    assert " ".join(words.split()) in " ".join(README.read_text(encoding="utf-8").split())
    assert value == number


async def test_the_intakes_open_transactions_are_aborted_after_readmes_60_s() -> None:
    """README (Running on Kubernetes): a transaction a replaced pod's intake left open
    holds back read_committed readers until the broker aborts it at the producers'
    transaction timeout, aiokafka's default, 60 s."""
    assert "(aiokafka's default, 60 s)" in " ".join(README.read_text(encoding="utf-8").split())
    publisher = bootstrap.intake_publisher(Settings())
    try:
        for committer in publisher._committers:
            producer = committer._new_producer()
            try:
                assert producer._txn_manager.transaction_timeout_ms == 60_000
            finally:
                await producer.stop()  # never started: nothing to reach
    finally:
        await publisher.close()


def test_the_pipeline_latencys_bucket_edges_are_the_exporters() -> None:
    row = next(line for line in README.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `routing_pipeline_latency_seconds` |"))
    written = re.search(r"bucket edges ([0-9., and]+) s", row)
    assert written is not None, row
    edges = [float(edge) for edge in re.split(r", | and ", written.group(1))]
    assert edges == [float(edge) for edge in exporter.PIPELINE_BUCKETS]


def test_every_row_of_readmes_tables_is_one_line() -> None:
    """A row broken over lines renders as several rows, its cells scattered."""
    broken = [number for number, line in enumerate(
        README.read_text(encoding="utf-8").splitlines(), start=1)
        if line.startswith("|") and not line.rstrip().endswith("|")]
    assert broken == []


def test_the_walk_throughs_demo_table_sets_first_response_targets_only() -> None:
    """README's walk-through says so of config/routing.yaml (no next-response clock
    starts there); a target added to it is to be said there too."""
    assert "sets first-response targets only" in " ".join(
        README.read_text(encoding="utf-8").split())
    shipped = (settings.PROJECT_ROOT / "config" / "routing.yaml").read_text(encoding="utf-8")
    assert "first_response_target" in shipped
    assert not re.search(r"\b(next_response|resolution)_target\b", shipped)


# Each range the Configuration table states: the variable, README's words for it (in that
# variable's row), and the least and the most it takes.
RANGES = [
    ("KAFKA_FETCH_MAX_WAIT_MS", "(1-500;", 1, 500),
    ("INTAKE_PRODUCERS", "(1-16)", 1, 16),
    ("INTAKE_GATHER_MS", "(0-100)", 0, 100),
    ("ROUTER_PORT", "(1-65535)", 1, 65535),
    ("SEGMENTER_PORT", "(1-65535)", 1, 65535),
    ("METRICS_PORT", "(1-65535)", 1, 65535),
    ("CUSTOMER_CACHE_SIZE", "(0 turns the cache off)", 0, None),
    ("TIER_RECOMPUTE_INTERVAL_SECONDS", "0: only on demand", 0, None),
    ("PROTECTED_GROUP_MINIMUM_SIZE", "(1-1,000,000)", 1, 1_000_000),
    ("RETENTION_PURGE_CHUNK", "(1-100,000)", 1, 100_000),
    ("WEBHOOK_MAX_ATTEMPTS", "(1-100)", 1, 100),
    ("WEBHOOK_CONCURRENCY_PER_PLATFORM", "(1-100)", 1, 100),
    ("REPORTS_AT_ONCE", "(1-32)", 1, 32),
]


def configuration_row(variable: str) -> str:
    section = README.read_text(encoding="utf-8").split("\n## Configuration", 1)[1]
    return next(line for line in section.split("\n## ", 1)[0].splitlines()
                if line.startswith("| `") and f"`{variable}`" in line.split(" | ")[0])


def taken(variable: str, value: int) -> bool:
    try:
        Settings(**{variable.lower(): value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("variable", "words", "least", "most"), RANGES,
                         ids=[variable for variable, *_ in RANGES])
def test_a_range_the_table_states_is_the_one_the_setting_takes(
        variable: str, words: str, least: int, most: int | None) -> None:
    assert words in configuration_row(variable)
    assert taken(variable, least) and not taken(variable, least - 1)
    if most is not None:
        assert taken(variable, most) and not taken(variable, most + 1)
