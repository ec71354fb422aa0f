"""`routing webhooks` on a real SQLite store: the admin API's checks and actions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from typer.testing import CliRunner

from services.core import admin_actions, db, migrate
from services.webhooks import endpoint_store, models, outbox_store
from services.webhooks_cli import app
from tests import credentials


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return CliRunner()


def dead_letter(database_url: str, delivery_id: str) -> None:
    async def run() -> None:
        await migrate.upgrade(database_url)
        engine = db.engine(database_url)
        endpoints = endpoint_store.Endpoints(db.sessions(engine), secret_overlap=timedelta(hours=1))
        await endpoints.register("desk", "https://d.example/h")  # None: there already
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        await deliveries.enqueue([outbox_store.Outgoing(delivery_id, "desk", "ticket.routed",
                                                 "t-1", "{}")])
        await deliveries.record_attempt(delivery_id, status=models.DEAD, attempts=3,
                                        next_attempt_at=datetime.now(UTC), error="HTTP 500")
        await engine.dispose()

    asyncio.run(run())


def kept(database_url: str) -> Sequence[admin_actions.AdminAction]:
    async def run() -> Sequence[admin_actions.AdminAction]:
        engine = db.engine(database_url)
        try:
            return await admin_actions.AdminActions(db.sessions(engine)).listed()
        finally:
            await engine.dispose()

    return asyncio.run(run())


class TestEndpoints:
    def test_register_shows_the_secret_once_then_update_rotate_delete(
            self, cli: CliRunner, sqlite_url: str) -> None:
        credentials.issue_token_blocking(sqlite_url, "platform", "desk")
        registered = cli.invoke(app, ["register", "desk", "--url", "https://d.example/h"])
        assert registered.exit_code == 0, registered.output
        secret = registered.stdout.strip()
        standardwebhooks.Webhook(secret)
        listed = [json.loads(line) for line in cli.invoke(app, ["list"]).stdout.splitlines()]
        assert [(e["platform"], e["url"]) for e in listed] == [("desk", "https://d.example/h")]
        assert secret not in cli.invoke(app, ["list"]).stdout
        disabled = cli.invoke(app, ["update", "desk", "--disabled"])
        assert json.loads(disabled.stdout)["enabled"] is False
        rotated = cli.invoke(app, ["rotate-secret", "desk"]).stdout.strip()
        assert rotated.startswith("whsec_") and rotated != secret
        again = cli.invoke(app, ["rotate-secret", "desk"])  # the first still signs
        assert again.exit_code == 1 and "still signs until" in again.stderr
        forced = cli.invoke(app, ["rotate-secret", "desk", "--force"])
        assert forced.exit_code == 0 and forced.stdout.strip() not in (secret, rotated)
        assert cli.invoke(app, ["delete", "desk"]).exit_code == 0
        assert cli.invoke(app, ["delete", "desk"]).exit_code == 1
        # Each kept as the command line's action (admin_actions).
        assert [(action.action.value, action.actor) for action in reversed(kept(sqlite_url))
                ] == [(done, admin_actions.COMMAND_LINE) for done in (
                    "credential_issued", "webhook_endpoint_registered", "webhook_endpoint_changed",
                    "webhook_secret_rotated", "webhook_secret_rotated",
                    "webhook_endpoint_deleted")]

    def test_a_plain_http_url_elsewhere_than_loopback_is_refused_naming_the_field(
            self, cli: CliRunner, sqlite_url: str) -> None:
        refused = cli.invoke(app, ["register", "desk", "--url", "http://d.example/h"])
        assert refused.exit_code == 2
        assert refused.stderr.startswith("--url: ") and "https:// is required" in refused.stderr
        credentials.issue_token_blocking(sqlite_url, "platform", "desk")
        assert cli.invoke(app, ["register", "desk", "--url",
                                "http://127.0.0.1:8000/h"]).exit_code == 0

    def test_a_platform_never_issued_a_credential_is_refused_naming_it(
            self, cli: CliRunner, sqlite_url: str) -> None:
        credentials.issue_token_blocking(sqlite_url, "platform", "desk")
        refused = cli.invoke(app, ["register", "dsek", "--url", "https://d.example/h"])
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.startswith(
            "platform: no platform credential was ever issued for 'dsek'")
        assert "platforms with one: desk" in refused.stderr
        assert cli.invoke(app, ["list"]).stdout == ""


class TestHolds:
    def test_update_lift_hold_lifts_it(self, cli: CliRunner, sqlite_url: str) -> None:
        async def hold() -> None:
            engine = db.engine(sqlite_url)
            endpoints = endpoint_store.Endpoints(db.sessions(engine),
                                                 secret_overlap=timedelta(hours=1))
            now = datetime.now(UTC)
            assert await endpoints.hold("desk", url="https://d.example/h",
                                        until=now + timedelta(minutes=10), now=now)
            await engine.dispose()

        dead_letter(sqlite_url, "msg_1")  # desk's endpoint, registered
        asyncio.run(hold())
        held = json.loads(cli.invoke(app, ["list"]).stdout)
        assert held["held_until"] is not None
        lifted = cli.invoke(app, ["update", "desk", "--lift-hold"])
        assert lifted.exit_code == 0, lifted.output
        assert json.loads(lifted.stdout)["held_until"] is None


class TestDeadLetters:
    def test_listed_and_replayed(self, cli: CliRunner, sqlite_url: str) -> None:
        dead_letter(sqlite_url, "msg_1")
        listed = cli.invoke(app, ["dead-letters", "--platform", "desk"]).stdout
        assert json.loads(listed)["delivery_id"] == "msg_1"
        assert cli.invoke(app, ["replay", "msg_1"]).stdout.strip() == "replayed 1"
        assert cli.invoke(app, ["replay", "msg_1"]).exit_code == 1
        assert cli.invoke(app, ["dead-letters"]).stdout == ""

    def test_a_page_at_a_time_with_where_the_next_starts(self, cli: CliRunner,
                                                         sqlite_url: str) -> None:
        for delivery_id in ("msg_1", "msg_2", "msg_3"):
            dead_letter(sqlite_url, delivery_id)
        shown: list[str] = []
        since: list[str] = []
        for _ in range(3):
            page = cli.invoke(app, ["dead-letters", "--limit", "2", *since])
            assert page.exit_code == 0, page.output
            shown += [json.loads(line)["delivery_id"] for line in page.stdout.splitlines()]
            if "--since" not in page.stderr:
                break
            since = ["--since", page.stderr.rpartition("--since ")[2].strip()]
        assert shown == ["msg_1", "msg_2", "msg_3"]
        assert page.stderr == ""  # the last page says no next one

    @pytest.mark.parametrize(("options", "said"), [
        (["--limit", "0"], "--limit: from 1 to 500 callbacks a page, not 0"),
        (["--limit", "501"], "--limit: from 1 to 500 callbacks a page, not 501"),
        (["--since", "msg_1"], "--since: the `next` of the page before")])
    def test_a_page_size_out_of_range_or_no_cursor_is_refused_naming_the_option(
            self, cli: CliRunner, options: list[str], said: str) -> None:
        refused = cli.invoke(app, ["dead-letters", *options])
        assert refused.exit_code == 2 and refused.stderr.startswith(said), refused.output
