"""What platforms are told and the rules of delivering it: the event table, payloads,
endpoint URLs and retry delays."""

from __future__ import annotations

import inspect
import json
import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies

from services.core import events
from services.core.settings import Settings
from services.webhooks import catalog, endpoint_store, models, payloads, service

Type = events.TicketEventType
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class TestWhatIsDelivered:
    def test_the_routing_escalation_transfer_and_resolution_are_in_the_table(self) -> None:
        assert {Type.ROUTED, Type.ESCALATED, Type.TRANSFERRED, Type.RESPONDED,
                Type.RESOLVED} <= set(catalog.WEBHOOK_EVENTS)
        assert Type.RECEIVED not in catalog.WEBHOOK_EVENTS  # the platform sent it

    def test_the_table_holds_the_events_readme_lists_and_no_other(self) -> None:
        """README, "Webhooks to the platforms": what a platform is called back for today."""
        assert set(catalog.WEBHOOK_EVENTS.values()) == {
            "ticket.routed", "ticket.picked_up", "ticket.responded",
            "ticket.waiting_on_customer", "ticket.deadlines_changed",
            "ticket.target_warning", "ticket.escalated", "ticket.transferred",
            "ticket.priority_changed", "ticket.resolved"}

    def test_the_names_sent_are_the_event_types_own_spelt_once(self) -> None:
        assert all(name == kind.value for kind, name in catalog.WEBHOOK_EVENTS.items())
        # Spelt a second time, a name could drift from the event's: `events` alone has them.
        for module in (catalog, payloads):
            assert not re.search(r"[\"']ticket\.", inspect.getsource(module))

    @pytest.mark.parametrize("kind", list(catalog.WEBHOOK_EVENTS))
    def test_every_listed_type_has_a_body_in_the_standard_shape(self, kind: Type) -> None:
        lifecycle = events.TicketEvent(ticket_id="t-1", type=kind, occurred_at=AT,
                                       department="government", platform="desk")
        body = json.loads(payloads.body_of(lifecycle, correlation_id="c-7"))
        assert body == {"type": catalog.WEBHOOK_EVENTS[kind],
                        "timestamp": "2026-11-30T09:00:00Z",
                        "data": {"ticket_id": "t-1", "occurred_at": "2026-11-30T09:00:00Z",
                                 "department": "government", "correlation_id": "c-7"}}

    def test_the_routing_carries_department_priority_and_deadline(self) -> None:
        lifecycle = events.TicketEvent(
            ticket_id="t-1", type=Type.ROUTED, occurred_at=AT, department="government",
            segment="government", priority=3, reason="route", platform="desk",
            first_response_deadline=datetime(2026, 11, 30, 13, 0, tzinfo=UTC))
        data = json.loads(payloads.body_of(lifecycle, correlation_id="t-1"))["data"]
        assert (data["department"], data["priority"], data["first_response_deadline"]) == (
            "government", 3, "2026-11-30T13:00:00Z")
        assert "platform" not in data

    def test_the_delivery_id_is_the_events(self) -> None:
        assert catalog.delivery_id("e-42") == "msg_e-42"


class TestEndpointUrls:
    @pytest.mark.parametrize("url", [
        "https://desk.example.com/hooks", "https://203.0.113.9:8443/x",
        "http://127.0.0.1:9000/hooks", "http://[::1]:9000/", "http://localhost/hooks",
        "http://127.0.0.2/hooks"])
    def test_https_or_loopback_is_accepted(self, url: str) -> None:
        assert catalog.endpoint_problem(url) is None

    @pytest.mark.parametrize(("url", "said"), [
        ("http://desk.example.com/hooks", "https:// is required"),
        ("http://10.0.0.5/hooks", "https:// is required"),
        ("ftp://desk.example.com/", "an absolute https:// URL"),
        ("desk.example.com/hooks", "an absolute https:// URL"),
        ("https://user:pw@desk.example.com/", "no user or password"),
        ("https://desk.example.com/" + "x" * 2048, "at most 2048 characters")])
    def test_anything_else_is_refused_saying_why(self, url: str, said: str) -> None:
        problem = catalog.endpoint_problem(url)
        assert problem is not None and said in problem

    @pytest.mark.parametrize(("url", "said"), [
        ("https://10.0.0.300/hooks", "a URL the sender can parse"),
        ("https://xn--/hooks", "a URL the sender can parse"),
        ("https://xn--abc.example.com/hooks", "a URL the sender can parse"),
        ("https://desk..example.com/hooks", "a URL the sender can parse"),
        ("https://" + "d" * 64 + ".example.com/hooks", "a URL the sender can parse"),
        ("https://desk.example.com:99999/hooks", "a port from 1 to 65535"),
        ("http://127.0.0.1:0/hooks", "a port from 1 to 65535"),
        ("https://10.1/hooks", "must be an IPv4 address"),
        ("https://3232235777/hooks", "must be an IPv4 address"),
        # Characters a URL allows in a host, no resolver in a name.
        ("https://desk.%00/hooks", "a host name"), ("https://1.%31/hooks", "a host name"),
        ("https://x.(a)/hooks", "a host name"), ("https://desk.-/hooks", "a host name"),
        ("https://-desk.example.com/hooks", "a host name")])
    def test_what_the_sender_cannot_call_is_refused_saying_why(self, url: str, said: str
                                                                ) -> None:
        problem = catalog.endpoint_problem(url)
        assert problem is not None and said in problem

    @pytest.mark.parametrize(("url", "origin"), [
        ("https://desk.example.com/hooks?token=t", "https://desk.example.com"),
        ("https://user:pw@desk.example.com:8443/h", "https://desk.example.com:8443"),
        ("http://[::1]:9000/", "http://[::1]:9000")])
    def test_what_is_said_of_an_endpoint_is_its_origin_alone(self, url: str, origin: str
                                                             ) -> None:
        assert catalog.origin_of(url) == origin
        assert catalog.change_of(url=url, enabled=False) == f"url {origin}/..., disabled"

    def test_a_host_in_valid_punycode_is_accepted(self) -> None:
        assert catalog.endpoint_problem("https://xn--mnchen-3ya.example/hooks") is None


    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(strategies.from_regex(catalog.URL_PATTERN, fullmatch=True).filter(
        lambda url: len(url) <= catalog.MAX_URL_LENGTH and "xn--" not in url.lower()))
    def test_whatever_the_schemas_pattern_allows_is_accepted(self, url: str) -> None:
        """But the punycode of an xn-- label, which no pattern can check."""
        assert catalog.endpoint_problem(url) is None

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(strategies.text(max_size=80))
    def test_whatever_is_accepted_the_schemas_pattern_allows(self, url: str) -> None:
        if catalog.endpoint_problem(url) is None:
            assert re.fullmatch(catalog.URL_PATTERN, url)


class TestPlatformsWithEndpoints:
    def test_a_platform_issued_a_credential_may_have_one(self) -> None:
        assert catalog.platform_problem("desk", {"desk", "other"}) is None

    @pytest.mark.parametrize(("issued", "listed"), [
        ({"other", "desk"}, "platforms with one: desk, other"),
        (set(), "platforms with one: none yet")])
    def test_another_is_refused_saying_which_have_one(self, issued: set[str],
                                                       listed: str) -> None:
        problem = catalog.platform_problem("dsek", issued)
        assert problem is not None and problem.endswith(listed)
        assert "no platform credential was ever issued for 'dsek'" in problem

    def test_past_twenty_the_rest_are_counted_not_named(self) -> None:
        issued = {f"desk-{number:03}" for number in range(catalog.PLATFORMS_NAMED + 7)}
        problem = catalog.platform_problem("dsek", issued)
        assert problem is not None
        assert problem.endswith(", desk-019, and 7 more (GET /v1/credentials?role=platform"
                                " lists them)")
        assert "desk-020" not in problem


class TestWhatAnAnswerSays:
    @pytest.mark.parametrize("status", [200, 202, 204, 299])
    def test_a_2xx_is_taken(self, status: int) -> None:
        assert catalog.answered(status, retry_after="60", now=AT) is None

    @pytest.mark.parametrize("status", [301, 400, 404, 429, 500, 503])
    def test_any_other_status_fails_the_attempt(self, status: int) -> None:
        assert catalog.answered(status, now=AT) == catalog.Failed(f"HTTP {status}", status)
        assert not catalog.Failed(f"HTTP {status}", status).gone

    def test_410_gone_says_the_receiver_wants_no_more(self) -> None:
        failed = catalog.answered(410, now=AT)
        assert failed is not None and failed.gone and failed.error == "HTTP 410"

    @pytest.mark.parametrize(("status", "retry_after", "asked"), [
        (429, "120", 120.0), (503, " 30 ", 30.0), (429, "0", 0.0),
        (503, "Mon, 30 Nov 2026 09:15:00 GMT", 900.0),
        (429, "Mon, 30 Nov 2026 09:15:00 -0000", 900.0),
        (503, "Mon, 30 Nov 2026 08:00:00 GMT", 0.0),  # past
        (429, "soon", None), (429, "-5", None), (429, "1.5", None), (429, "", None),
        (500, "120", None), (404, "120", None), (301, "120", None)])  # only 429 and 503
    def test_a_429_or_503_says_how_long_its_retry_after_asks(
            self, status: int, retry_after: str, asked: float | None) -> None:
        failed = catalog.answered(status, retry_after=retry_after, now=AT)
        assert failed is not None and failed.retry_after == asked

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(strategies.text(max_size=60))
    def test_any_retry_after_is_read_without_failing(self, retry_after: str) -> None:
        asked = catalog.asked_to_wait(retry_after, now=AT)
        assert asked is None or asked >= 0


class TestRetryDelays:
    policy = catalog.RetryPolicy(max_attempts=5, base_seconds=10, max_seconds=60)

    def test_each_step_doubles_up_to_the_cap_with_jitter_in_its_upper_half(self) -> None:
        lowest = [self.policy.delay_after(n, jitter=lambda low, _high: low) for n in (1, 2, 3, 4)]
        highest = [self.policy.delay_after(n, jitter=lambda _low, high: high)
                   for n in (1, 2, 3, 4)]
        assert lowest == [5, 10, 20, 30] and highest == [10, 20, 40, 60]

    def test_random_jitter_stays_within_the_step(self) -> None:
        delays = [self.policy.delay_after(3) for _ in range(200)]
        assert all(delay is not None and 20 <= delay <= 40 for delay in delays)
        assert len(set(delays)) > 1

    def test_the_last_attempt_dead_letters(self) -> None:
        assert self.policy.delay_after(5) is None
        assert self.policy.delay_after(5, asked=30) is None

    @pytest.mark.parametrize(("asked", "delay"), [
        (None, 5), (3, 5), (45, 45), (3600, 60), (math.inf, 60)])
    def test_a_retry_after_is_waited_when_longer_up_to_the_cap(
            self, asked: float | None, delay: float) -> None:
        assert self.policy.delay_after(1, asked=asked, jitter=lambda low, _high: low) == delay


class TestEndpointHolds:
    """A receiver asking the sender to slow down holds its whole endpoint, not only the
    callback it answered."""

    policy = catalog.RetryPolicy(max_attempts=5, base_seconds=10, max_seconds=60)

    @pytest.mark.parametrize(("status", "asked", "held"), [
        (429, 45.0, 45), (503, 45.0, 45),  # what its Retry-After asks
        (429, None, 10),  # a 429 without one: the backoff's first step
        (429, 3600.0, 60), (503, math.inf, 60),  # capped at the longest step
        (429, 0.0, None), (503, 0.0, None)])  # a wait of nothing holds nothing
    def test_a_429_or_a_503_with_retry_after_holds_the_endpoint(
            self, status: int, asked: float | None, held: float | None) -> None:
        assert self.policy.hold_after(catalog.Failed(f"HTTP {status}", status, asked)) == held

    @pytest.mark.parametrize("failed", [
        catalog.Failed("HTTP 503", 503),  # no Retry-After: that callback's failure alone
        catalog.Failed("HTTP 500", 500), catalog.Failed("HTTP 404", 404),
        catalog.Failed("HTTP 410", 410), catalog.Failed("TimeoutError")])
    def test_any_other_failure_holds_nothing(self, failed: catalog.Failed) -> None:
        assert self.policy.hold_after(failed) is None

    def test_the_hold_is_read_from_the_answer_as_sent(self) -> None:
        failed = catalog.answered(429, retry_after="Mon, 30 Nov 2026 09:00:30 GMT", now=AT)
        assert failed is not None and self.policy.hold_after(failed) == 30

    @pytest.mark.parametrize(("until", "in_force"), [
        (AT + timedelta(seconds=1), True), (AT, False), (AT - timedelta(seconds=1), False),
        (None, False)])
    def test_a_hold_is_in_force_until_its_time_at_the_now_given(
            self, until: datetime | None, in_force: bool) -> None:
        assert catalog.hold_in_force(until, now=AT) == (until if in_force else None)
        row = models.WebhookEndpointRow(platform="desk", url="https://d.example/h",
                                        enabled=True, held_until=until, created_at=AT,
                                        updated_at=AT)
        shown = endpoint_store.Endpoint.shown(row, now=AT)
        assert shown.held_until == (until if in_force else None)


class TestSettings:
    def test_the_retry_policy_is_the_settings(self) -> None:
        configured = Settings(webhook_max_attempts=7, webhook_retry_base_seconds=2,
                              webhook_retry_max_seconds=90)
        assert service.retry_policy(configured) == catalog.RetryPolicy(
            max_attempts=7, base_seconds=2, max_seconds=90)
