"""Retention settings and the cutoffs they give each table (plain values); README's
account of the purge names each setting. That the services' purge jobs cover every table
with a retention, once: tests/integration/test_retention.py (TestEachServicesPurge)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.core import retention, topics
from services.core.settings import PROJECT_ROOT, Settings
from services.router import erasures

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RETENTION_SETTINGS = sorted(name for name in Settings.model_fields
                            if name.startswith("retention_") and name.endswith("_days"))


class TestCutoffs:
    def test_each_table_is_cut_at_its_own_retention(self) -> None:
        keep = retention.Retention.of_days(ticket_states=90, timelines=400,
                                           idempotency_keys=7)

        assert keep.cutoffs(NOW) == {"routed_tickets": NOW - timedelta(days=90),
                                     "webhook_deliveries": NOW - timedelta(days=90),
                                     "ticket_timelines": NOW - timedelta(days=400),
                                     "intake_keys": NOW - timedelta(days=7),
                                     "erased_customers": NOW - timedelta(days=37),
                                     # As long as tickets.dlq keeps the dead letter.
                                     "held_tickets": NOW - timedelta(days=30)}

    def test_an_erasure_is_remembered_while_kafka_can_bring_back_a_ticket_before_it(
            self) -> None:
        # A dead letter (30 days) replayed on its last day to its source topic (7 more).
        longest = topics.RETENTION_DAYS[topics.DEAD_LETTERS] + max(
            topics.RETENTION_DAYS[topic] for topic in (topics.INCOMING, topics.SEGMENTED))

        assert retention.ERASURES_REMEMBERED == timedelta(days=longest) == timedelta(days=37)

    @pytest.mark.parametrize("setting", RETENTION_SETTINGS)
    def test_every_retention_setting_cuts_some_table(self, setting: str) -> None:
        default = retention.of_settings(Settings()).cutoffs(NOW)

        cut = retention.of_settings(Settings(**{setting: 1})).cutoffs(NOW)

        assert cut != default

    def test_readme_names_every_retention_setting_where_it_tells_the_purge(self) -> None:
        readme = (PROJECT_ROOT / "README.md").read_text("utf-8")
        start = readme.index("**Retention in the SQL store.**")
        purge = readme[start:readme.index("\n\n", start)]

        assert RETENTION_SETTINGS == ["retention_idempotency_keys_days",
                                      "retention_ticket_states_days",
                                      "retention_timelines_days"]
        assert all(f"`{setting.upper()}`" in purge for setting in RETENTION_SETTINGS)


class TestForgottenTickets:
    def test_a_ticket_received_before_its_customers_erasure_is_forgotten(self) -> None:
        assert erasures.forgotten(NOW - timedelta(seconds=1), NOW)

    def test_a_ticket_received_at_the_erasure_is_forgotten(self) -> None:
        assert erasures.forgotten(NOW, NOW)

    def test_a_ticket_received_after_the_erasure_is_a_new_contact(self) -> None:
        assert not erasures.forgotten(NOW + timedelta(seconds=1), NOW)

    def test_a_ticket_of_a_customer_never_erased_is_kept(self) -> None:
        assert not erasures.forgotten(NOW, None)


class TestSettings:
    def test_defaults_keep_states_90_timelines_400_and_keys_7_days(self) -> None:
        keep = retention.of_settings(Settings())

        assert keep == retention.Retention(timedelta(days=90), timedelta(days=400),
                                           timedelta(days=7))
        assert Settings().retention_purge_interval_seconds == 3600
        assert Settings().retention_purge_chunk == 1000

    def test_the_environment_sets_each_retention(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RETENTION_TICKET_STATES_DAYS", "30")
        monkeypatch.setenv("RETENTION_TIMELINES_DAYS", "365")
        monkeypatch.setenv("RETENTION_IDEMPOTENCY_KEYS_DAYS", "1.5")

        keep = retention.of_settings(Settings())

        assert keep == retention.Retention(timedelta(days=30), timedelta(days=365),
                                           timedelta(hours=36))

    def test_a_retention_of_zero_is_refused_naming_the_setting(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RETENTION_TIMELINES_DAYS", "0")

        with pytest.raises(ValidationError, match="retention_timelines_days"):
            Settings()
