"""Accepting a ticket (services/router/service/accepting.py), run with recording fakes
wired by the router's own bootstrap: no broker, no database, no sockets."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from services.core import tickets, topics
from services.core.events import TicketEventType
from services.core.settings import Settings
from services.core.transactional_publisher import longest_publish
from services.router import ports, service
from services.router.service import Verdict
from tests.conftest import TEST_ROUTING_TABLE
from tests.unit.router_fakes import Wired, wired
from tests.unit.test_outage import as_sqlalchemy_raises

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def content(subject: str = "my invoice") -> tickets.TicketContent:
    return tickets.TicketContent(customer_id="c-1", subject=subject, body="hello",
                                 channel="web")


def ticket_with(attributes: dict[str, Any]) -> tickets.TicketContent:
    return tickets.TicketContent(customer_id="c-1", subject="my invoice", body="hello",
                                 channel="web", attributes=attributes)


async def accept_content(router: Wired, sent: tickets.TicketContent,
                         ticket_id: str) -> service.Acceptance:
    return await service.accept_ticket(
        sent, platform="helpdesk", correlation_id=None, idempotency_key="key-1",
        keys=router.router.intake_keys, publisher=router.router.publisher,
        in_flight_for=router.router.claim_hold, now=NOW, new_id=lambda _now: ticket_id)


async def accept(router: Wired, *, key: str | None = "key-1",
                 correlation_id: str | None = "corr-1", subject: str = "my invoice",
                 platform: str = "helpdesk", now: datetime = NOW,
                 ticket_id: str = "t-new") -> service.Acceptance:
    return await service.accept_ticket(
        content(subject), platform=platform, correlation_id=correlation_id,
        idempotency_key=key, keys=router.router.intake_keys,
        publisher=router.router.publisher, in_flight_for=router.router.claim_hold,
        now=now, new_id=lambda _now: ticket_id)


class TestBootstrap:
    def test_the_routing_table_comes_from_the_settings_file(self) -> None:
        router = wired().router
        assert router.table.path == TEST_ROUTING_TABLE.resolve()
        assert router.table.current.version.startswith("tests-1+")  # + its content hash

    @pytest.mark.parametrize("timeout", [0.5, 5.0, 30.0])
    def test_a_claim_holds_three_produce_timeouts_past_the_longest_publish_s_two(
            self, timeout: float) -> None:
        """As README says: a publish waits at most twice PRODUCE_TIMEOUT_SECONDS, a claim
        (an Idempotency-Key in flight, a hand-over) holds three times it."""
        settings = Settings(produce_timeout_seconds=timeout)
        assert longest_publish(settings) == timedelta(seconds=2 * timeout)
        assert ports.claim_hold(settings) == timedelta(seconds=3 * timeout)


class TestAcceptTicket:
    async def test_accepted_once_published_under_the_callers_correlation_id(self) -> None:
        router = wired()
        accepted = await accept(router)
        assert (accepted.verdict, accepted.ticket_id, accepted.correlation_id) == (
            Verdict.ACCEPTED, "t-new", "corr-1")
        assert [(p.topic, p.event.type, p.event.correlation_id)
                for p in router.publisher.published] == [
            (topics.INCOMING, TicketEventType.RECEIVED, "corr-1"),
            (topics.EVENTS, TicketEventType.RECEIVED, "corr-1")]
        assert router.publisher.published[0].event.data["platform"] == "helpdesk"

    @pytest.mark.parametrize("store_error", [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),  # a conflict
        asyncpg.exceptions.InterfaceError("connection is closed"),  # an outage
    ])
    async def test_published_it_is_accepted_though_its_key_could_not_be_marked(
            self, store_error: Exception) -> None:
        """The ticket is in Kafka: the answer says so, whatever passing trouble the store
        had marking its key accepted (the key stays pending; a retry with it publishes
        the same ticket id again, and the router drops that copy)."""
        router = wired()
        keys = router.router.intake_keys

        async def refused(*_args: object, **_options: object) -> None:
            raise as_sqlalchemy_raises(store_error)

        keys.accepted = refused  # type: ignore[method-assign]
        accepted = await accept(router)
        assert (accepted.verdict, accepted.ticket_id) == (Verdict.ACCEPTED, "t-new")
        assert len(router.publisher.published) == 2
        assert [row.status for row in keys.rows.values()] == ["pending"]

    async def test_without_a_correlation_id_the_ticket_id_is_it(self) -> None:
        accepted = await accept(wired(), correlation_id=None)
        assert accepted.correlation_id == accepted.ticket_id == "t-new"

    async def test_a_replay_answers_the_first_ticket_and_correlation_id(self) -> None:
        router = wired()
        await accept(router, correlation_id="corr-first", ticket_id="t-first")
        replay = await accept(router, correlation_id=None, ticket_id="t-second")
        assert (replay.verdict, replay.ticket_id, replay.correlation_id) == (
            Verdict.REPLAY, "t-first", "corr-first")
        assert len(router.publisher.published) == 2  # the first request's only

    async def test_a_key_claimed_before_correlation_ids_were_kept_replays_the_ticket_id(
            self) -> None:
        router = wired()
        await accept(router, ticket_id="t-first")
        next(iter(router.keys.rows.values())).correlation_id = None
        replay = await accept(router, ticket_id="t-second")
        assert (replay.ticket_id, replay.correlation_id) == ("t-first", "t-first")

    async def test_another_ticket_under_a_used_key_is_refused(self) -> None:
        router = wired()
        await accept(router)
        reused = await accept(router, subject="another matter", ticket_id="t-other")
        assert reused.verdict is Verdict.KEY_REUSED
        assert len(router.publisher.published) == 2

    async def test_a_retry_with_its_attributes_in_another_order_is_the_same_ticket(
            self) -> None:
        """A JSON object's members have no order: a platform whose map iterates anew
        after a restart resends the same ticket, answered as a replay, not 422."""
        router = wired()
        first = {"plan": "gold", "region": "eu", "seats": 12}
        again = {"seats": 12, "region": "eu", "plan": "gold"}
        await service.accept_ticket(
            ticket_with(first), platform="helpdesk", correlation_id=None,
            idempotency_key="key-1", keys=router.router.intake_keys,
            publisher=router.router.publisher, in_flight_for=router.router.claim_hold,
            now=NOW, new_id=lambda _now: "t-first")
        replay = await service.accept_ticket(
            ticket_with(again), platform="helpdesk", correlation_id=None,
            idempotency_key="key-1", keys=router.router.intake_keys,
            publisher=router.router.publisher, in_flight_for=router.router.claim_hold,
            now=NOW, new_id=lambda _now: "t-second")
        assert (replay.verdict, replay.ticket_id) == (Verdict.REPLAY, "t-first")
        other = await service.accept_ticket(
            ticket_with({**again, "plan": "silver"}), platform="helpdesk",
            correlation_id=None, idempotency_key="key-1", keys=router.router.intake_keys,
            publisher=router.router.publisher, in_flight_for=router.router.claim_hold,
            now=NOW, new_id=lambda _now: "t-third")
        assert other.verdict is Verdict.KEY_REUSED

    async def test_a_key_claimed_with_the_first_fingerprint_still_replays(self) -> None:
        """Keys claimed before the fingerprint took one form (the attributes in the
        order they came) replay a retry sent as before, until their retention ends."""
        router = wired()
        await accept(router, ticket_id="t-first")
        row = next(iter(router.keys.rows.values()))
        row.fingerprint = hashlib.sha256(content().model_dump_json().encode()).hexdigest()
        replay = await accept(router, ticket_id="t-second")
        assert (replay.verdict, replay.ticket_id) == (Verdict.REPLAY, "t-first")

    @pytest.mark.parametrize(("first", "again"), [
        ({"a": 1}, {"a": 1.0}), ({"a": 1.0}, {"a": 1}), ({"a": 0}, {"a": -0.0}),
        ({"a": 10**18}, {"a": 1e18})])
    async def test_a_retry_writing_a_number_otherwise_is_the_same_ticket(
            self, first: dict[str, Any], again: dict[str, Any]) -> None:
        """1 and 1.0 are one number in JSON: a retry whose client writes it otherwise
        replays the ticket (it was a 422 `idempotency_key_reused`)."""
        router = wired()
        await accept_content(router, ticket_with(first), "t-first")
        replay = await accept_content(router, ticket_with(again), "t-second")
        assert (replay.verdict, replay.ticket_id) == (Verdict.REPLAY, "t-first")

    @pytest.mark.parametrize("other", [{"a": 1.5}, {"a": 2}, {"a": "1"}, {"a": True}])
    async def test_another_number_is_another_ticket(self, other: dict[str, Any]) -> None:
        router = wired()
        await accept_content(router, ticket_with({"a": 1}), "t-first")
        reused = await accept_content(router, ticket_with(other), "t-second")
        assert reused.verdict is Verdict.KEY_REUSED

    async def test_a_key_claimed_with_numbers_as_written_still_replays(self) -> None:
        """Keys claimed before numbers took one form (sorted, 1.0 unlike 1) replay a
        retry sent as before, until their retention ends."""
        router = wired()
        sent = ticket_with({"b": 1.0, "a": 2})
        await accept_content(router, sent, "t-first")
        row = next(iter(router.keys.rows.values()))
        row.fingerprint = hashlib.sha256(orjson.dumps(
            sent.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()
        replay = await accept_content(router, sent, "t-second")
        assert (replay.verdict, replay.ticket_id) == (Verdict.REPLAY, "t-first")

    async def test_a_key_claimed_with_a_language_in_lower_case_still_replays(self) -> None:
        """The intake kept `nl-be` as sent before it kept a tag in BCP 47's case: a key
        claimed then replays a retry sent as before."""
        router = wired()
        sent = tickets.TicketContent(customer_id="c-1", subject="s", body="b",
                                     channel="web", language="nl-be")
        assert sent.language == "nl-BE"
        await accept_content(router, sent, "t-first")
        row = next(iter(router.keys.rows.values()))
        as_kept_then = {**sent.model_dump(mode="json"), "language": "nl-be"}
        row.fingerprint = hashlib.sha256(
            orjson.dumps(as_kept_then, option=orjson.OPT_SORT_KEYS)).hexdigest()
        replay = await accept_content(router, sent, "t-second")
        assert (replay.verdict, replay.ticket_id) == (Verdict.REPLAY, "t-first")

    async def test_two_platforms_may_use_the_same_key(self) -> None:
        router = wired()
        await accept(router, platform="helpdesk", ticket_id="t-a")
        other = await accept(router, platform="webshop", ticket_id="t-b")
        assert (other.verdict, other.ticket_id) == (Verdict.ACCEPTED, "t-b")

    async def test_kafka_unavailable_releases_the_key(self) -> None:
        router = wired()
        router.publisher.fail = True
        unavailable = await accept(router)
        assert unavailable.verdict is Verdict.UNAVAILABLE
        assert [row.status for row in router.keys.rows.values()] == ["unpublished"]

    async def test_a_retry_after_unavailable_publishes_the_same_ticket_at_once(
            self) -> None:
        """Not a 409 in_progress while the first request's claim runs: nothing is in
        flight. The same ticket id, in case the broker took the first after all."""
        router = wired()
        router.publisher.fail = True
        await accept(router, ticket_id="t-first")
        router.publisher.fail = False
        retried = await accept(router, ticket_id="t-retry", now=NOW + timedelta(seconds=1))
        assert (retried.verdict, retried.ticket_id) == (Verdict.ACCEPTED, "t-first")
        assert {p.event.ticket_id for p in router.publisher.published} == {"t-first"}
        assert [row.status for row in router.keys.rows.values()] == ["accepted"]

    async def test_a_retry_after_unavailable_again_publishes_it_again(self) -> None:
        router = wired()
        router.publisher.fail = True
        await accept(router, ticket_id="t-first")
        again = await accept(router, ticket_id="t-retry", now=NOW + timedelta(seconds=1))
        assert again.verdict is Verdict.UNAVAILABLE
        router.publisher.fail = False
        retried = await accept(router, ticket_id="t-retry-2", now=NOW + timedelta(seconds=2))
        assert (retried.verdict, retried.ticket_id) == (Verdict.ACCEPTED, "t-first")

    async def test_a_key_the_store_could_not_release_waits_out_its_claim(self) -> None:
        """The store down as the publish failed: the key stays pending, and a retry is
        told to come again until its claim has run out (as after a request that died),
        then publishes the same ticket."""
        router = wired()

        async def store_down(_key: str) -> None:
            raise as_sqlalchemy_raises(asyncpg.exceptions.DeadlockDetectedError(
                "deadlock detected"))

        router.keys.unpublished = store_down  # type: ignore[method-assign]
        router.publisher.fail = True
        assert (await accept(router, ticket_id="t-first")).verdict is Verdict.UNAVAILABLE
        router.publisher.fail = False
        in_flight = await accept(router, ticket_id="t-retry", now=NOW + timedelta(seconds=1))
        assert in_flight.verdict is Verdict.IN_FLIGHT
        later = NOW + router.router.claim_hold + timedelta(seconds=1)
        taken_over = await accept(router, ticket_id="t-retry-2", now=later)
        assert (taken_over.verdict, taken_over.ticket_id) == (Verdict.ACCEPTED, "t-first")
        assert {p.event.ticket_id for p in router.publisher.published} == {"t-first"}

    async def test_a_ticket_too_large_to_carry_is_refused_before_its_key_is_claimed(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The record budget is lowered: over HTTP, the body limit comes first.
        monkeypatch.setattr(tickets, "MAX_TICKET_RECORD_BYTES", 300)
        router = wired()
        refused = await accept(router)
        assert refused.verdict is Verdict.TOO_LARGE and refused.problem
        assert router.keys.rows == {} and router.publisher.published == []
