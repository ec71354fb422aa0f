"""The admin API of the callbacks on a real SQL store: endpoints registered, listed,
changed, deleted, their secrets rotated (shown once); dead letters listed and replayed;
clear 4xx errors for what callers get wrong."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import standardwebhooks
from fastapi import FastAPI
from sqlalchemy import Engine, event, text

from services.core import (
    access,
    admin_actions,
    db,
    http,
    retention,
    service_context,
    text_forms,
)
from services.core.credentials import Credentials
from services.webhooks import api, endpoint_store, models, outbox_store, pages
from tests import credentials, databases
from tests.query_plans import plans

URL = "https://desk.example.com/hooks/routing"
PLATFORMS = ("desk", "other")


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = db.engine(database_url)
    sessions = db.sessions(engine)
    app = FastAPI()
    app.include_router(api.api)
    http.install(app, ready=lambda: True)
    service_context.of(app).provide(
        endpoint_store.Endpoints(sessions, secret_overlap=timedelta(hours=1)),
        outbox_store.Deliveries(sessions))
    try:
        async with credentials.authenticating(app, database_url) as keys, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://router",
                headers=await credentials.headers_of(keys, "admin")) as client:
            for platform in PLATFORMS:  # an endpoint is a platform's that has a credential
                await keys.issue(access.Role.PLATFORM, platform)
            yield client
    finally:
        await engine.dispose()


class TestEndpoints:
    async def test_register_list_change_rotate_delete(self, admin: httpx.AsyncClient,
                                                      database_url: str) -> None:
        answer = await admin.post("/v1/webhooks/endpoints", json={"platform": "desk",
                                                                   "url": URL})
        assert answer.status_code == 201, answer.text
        secret = answer.json()["secret"]
        assert secret.startswith("whsec_")
        standardwebhooks.Webhook(secret)  # a secret the receivers' library takes
        listed = (await admin.get("/v1/webhooks/endpoints")).json()
        assert [(e["platform"], e["url"], e["enabled"]) for e in listed] == [
            ("desk", URL, True)]
        assert "secret" not in listed[0]

        changed = await admin.patch("/v1/webhooks/endpoints/desk",
                                    json={"url": "http://127.0.0.1:9/x", "enabled": False})
        assert (changed.json()["url"], changed.json()["enabled"]) == (
            "http://127.0.0.1:9/x", False)
        # updated_at says when it last changed: a change of nothing leaves it.
        for nothing in ({}, {"enabled": False}, {"url": "http://127.0.0.1:9/x"}):
            same = await admin.patch("/v1/webhooks/endpoints/desk", json=nothing)
            assert same.status_code == 200, same.text
            assert same.json()["updated_at"] == changed.json()["updated_at"]
        rotated = (await admin.post("/v1/webhooks/endpoints/desk/secret")).json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
        engine = db.engine(database_url)
        async with engine.connect() as connection:
            kept = (await connection.execute(text("SELECT secret FROM webhook_endpoints"))
                    ).scalar_one()
        await engine.dispose()
        assert kept == rotated["secret"]  # the new one signs from now on

        # The first secret signs for the overlap beside it: another rotation would stop
        # it signing while receivers may still be on it, so it is refused unless forced.
        again = await admin.post("/v1/webhooks/endpoints/desk/secret")
        assert again.status_code == 409, again.text
        refusal = again.json()
        assert refusal["error"] == "previous_secret_still_signs"
        assert "force" in refusal["detail"] and refusal["until"] in refusal["detail"]
        forced = await admin.post("/v1/webhooks/endpoints/desk/secret",
                                  params={"force": "true"})
        assert forced.status_code == 200, forced.text
        assert forced.json()["secret"] not in (secret, rotated["secret"])
        # Forced: the current secret alone replaced (one lost before it was stored); the
        # first, which receivers may still be on, signs on for its overlap.
        engine = db.engine(database_url)
        async with engine.connect() as connection:
            current, previous = (await connection.execute(text(
                "SELECT secret, previous_secret FROM webhook_endpoints"))).one()
        await engine.dispose()
        assert (current, previous) == (forced.json()["secret"], secret)

        engine = db.engine(database_url)
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        await deliveries.enqueue([
            outbox_store.Outgoing("msg_1", "desk", "ticket.routed", "t", "{}")])
        assert (await admin.delete("/v1/webhooks/endpoints/desk")).status_code == 200
        assert (await admin.get("/v1/webhooks/endpoints/desk")).status_code == 404
        assert await deliveries.counts() == {}  # its waiting callbacks went with it
        await engine.dispose()

    async def test_an_endpoint_registered_disabled_stays_so_until_enabled(
            self, admin: httpx.AsyncClient) -> None:
        answer = await admin.post("/v1/webhooks/endpoints", json={
            "platform": "desk", "url": URL, "enabled": False})
        assert (answer.status_code, answer.json()["enabled"]) == (201, False), answer.text
        assert (await admin.get("/v1/webhooks/endpoints/desk")).json()["enabled"] is False
        enabled = await admin.patch("/v1/webhooks/endpoints/desk", json={"enabled": True})
        assert enabled.json()["enabled"] is True


class TestHeldEndpoints:
    """An endpoint whose receiver asked to wait (a 429, a 503 with Retry-After) shows until
    when; a new URL, enabling it, or `held_until` null lifts the hold."""

    @pytest.fixture
    async def endpoints(self, database_url: str) -> AsyncIterator[endpoint_store.Endpoints]:
        engine = db.engine(database_url)
        try:
            yield endpoint_store.Endpoints(db.sessions(engine), secret_overlap=timedelta(hours=1))
        finally:
            await engine.dispose()

    async def held(self, admin: httpx.AsyncClient) -> list[Any]:
        one = (await admin.get("/v1/webhooks/endpoints/desk")).json()["held_until"]
        return [one, *(e["held_until"] for e in (await admin.get("/v1/webhooks/endpoints")
                                                  ).json())]

    async def test_shown_until_lifted_by_a_new_url_or_enabling(
            self, admin: httpx.AsyncClient, endpoints: endpoint_store.Endpoints) -> None:
        assert (await admin.post("/v1/webhooks/endpoints", json={
            "platform": "desk", "url": URL})).status_code == 201
        assert await self.held(admin) == [None, None]
        now = datetime.now(UTC)
        until = now + timedelta(minutes=10)
        assert await endpoints.hold("desk", url=URL, until=until, now=now)
        assert [datetime.fromisoformat(at) for at in await self.held(admin)] == [until] * 2
        # Enabling an enabled endpoint changes nothing: the hold stays.
        assert (await admin.patch("/v1/webhooks/endpoints/desk", json={"enabled": True})
                ).json()["held_until"] is not None

        moved = await admin.patch("/v1/webhooks/endpoints/desk",
                                  json={"url": "https://desk.example.com/hooks/v2"})
        assert moved.json()["held_until"] is None and await self.held(admin) == [None, None]

        await admin.patch("/v1/webhooks/endpoints/desk", json={"enabled": False})
        assert await endpoints.hold("desk", url="https://desk.example.com/hooks/v2",
                                    until=until, now=now)
        enabled = await admin.patch("/v1/webhooks/endpoints/desk", json={"enabled": True})
        assert enabled.json()["held_until"] is None and await self.held(admin) == [None, None]

    async def test_lifted_by_held_until_null_on_an_enabled_endpoint(
            self, admin: httpx.AsyncClient, endpoints: endpoint_store.Endpoints,
            database_url: str) -> None:
        """The admin who knows the receiver is fine again: its callbacks go at once."""
        registered = await admin.post("/v1/webhooks/endpoints", json={
            "platform": "desk", "url": URL})
        nothing = await admin.patch("/v1/webhooks/endpoints/desk", json={"held_until": None})
        assert nothing.status_code == 200, nothing.text  # not held: nothing changes
        assert nothing.json()["updated_at"] == registered.json()["updated_at"]
        now = datetime.now(UTC)
        assert await endpoints.hold("desk", url=URL, until=now + timedelta(minutes=10),
                                    now=now)
        lifted = await admin.patch("/v1/webhooks/endpoints/desk", json={"held_until": None})
        assert lifted.status_code == 200, lifted.text
        assert (lifted.json()["held_until"], lifted.json()["enabled"]) == (None, True)
        assert await self.held(admin) == [None, None]
        assert await endpoints.held(now) == {}  # no worker waits for it any more
        assert lifted.json()["updated_at"] != registered.json()["updated_at"]
        engine = db.engine(database_url)
        try:
            [change] = [action for action in await admin_actions.AdminActions(
                db.sessions(engine)).listed()
                if action.action is admin_actions.Action.ENDPOINT_CHANGED]
        finally:
            await engine.dispose()
        assert change.change == "hold lifted"

    @pytest.mark.parametrize("until", ["2030-01-01T00:00:00Z", 0, False, {}])
    async def test_a_held_until_other_than_null_is_422_naming_it(
            self, admin: httpx.AsyncClient, until: object) -> None:
        """A hold is its receiver's to ask, not an admin's to set."""
        await admin.post("/v1/webhooks/endpoints", json={"platform": "desk", "url": URL})
        answer = await admin.patch("/v1/webhooks/endpoints/desk", json={"held_until": until})
        assert answer.status_code == 422, answer.text
        [refused] = answer.json()["fields"]
        assert refused["field"] == "body.held_until"
        assert refused["problem"].startswith("null alone, which lifts the hold")

    async def test_a_hold_whose_time_passed_is_none(
            self, admin: httpx.AsyncClient, endpoints: endpoint_store.Endpoints) -> None:
        await admin.post("/v1/webhooks/endpoints", json={"platform": "desk", "url": URL})
        now = datetime.now(UTC)
        assert await endpoints.hold("desk", url=URL, until=now - timedelta(seconds=1),
                                    now=now - timedelta(minutes=1))
        assert await self.held(admin) == [None, None]


class TestRegisteredTwiceAtOnce:
    async def test_the_second_of_two_registrations_racing_gets_409(
            self, admin: httpx.AsyncClient) -> None:
        """Another request registers `desk` between this one's look and its insert."""
        raced = False

        def register_first(_connection: Any, cursor: Any, statement: str,
                           *_args: Any) -> None:
            nonlocal raced
            if not raced and statement.startswith("INSERT INTO webhook_endpoints"):
                raced = True
                cursor.execute(
                    "INSERT INTO webhook_endpoints (platform, url, secret, enabled,"
                    " created_at, updated_at) VALUES ('desk', 'https://other.example.com/h',"
                    " 'whsec_x', true, '2026-12-01 09:00:00', '2026-12-01 09:00:00')")

        event.listen(Engine, "before_cursor_execute", register_first)
        try:
            answer = await admin.post("/v1/webhooks/endpoints",
                                      json={"platform": "desk", "url": URL})
        finally:
            event.remove(Engine, "before_cursor_execute", register_first)
        assert raced
        assert (answer.status_code, answer.json()["error"]) == (409, "conflict"), answer.text


class TestMistakes:
    @pytest.mark.parametrize(("url", "said"), [
        ("http://desk.example.com/hooks", "https:// is required"),
        ("desk.example.com", "an absolute https:// URL"),
        ("https://10.0.0.300/hooks", "a URL the sender can parse"),
        ("https://xn--/hooks", "a URL the sender can parse"),
        ("https://desk.example.com:99999/hooks", "a port from 1 to 65535")])
    async def test_a_url_that_is_not_https_nor_loopback_is_422_naming_the_field(
            self, admin: httpx.AsyncClient, url: str, said: str) -> None:
        answer = await admin.post("/v1/webhooks/endpoints", json={"platform": "desk",
                                                                   "url": url})
        assert answer.status_code == 422
        assert "url" in answer.text and said in answer.text

    async def test_a_url_changed_to_one_not_https_nor_loopback_is_422_naming_the_field(
            self, admin: httpx.AsyncClient) -> None:
        assert (await admin.post("/v1/webhooks/endpoints", json={
            "platform": "desk", "url": URL})).status_code == 201
        answer = await admin.patch("/v1/webhooks/endpoints/desk",
                                   json={"url": "http://desk.example.com/hooks"})
        assert answer.status_code == 422
        assert "url" in answer.text and "https:// is required" in answer.text
        assert (await admin.get("/v1/webhooks/endpoints/desk")).json()["url"] == URL

    @pytest.mark.parametrize("body", [
        b'{"platform": "desk", "url": "https://desk.example.com/hooks/\\ud800"}',
        b'{"platform": "desk", "url": "https://desk.example.com/hooks?token=\\udfff"}'])
    async def test_a_url_holding_a_lone_surrogate_is_422_saying_so(
            self, admin: httpx.AsyncClient, body: bytes) -> None:
        """Not that it is no URL the sender can parse (the URL's own check): that it is
        no Unicode text. Nothing is registered."""
        answer = await admin.post("/v1/webhooks/endpoints", content=body,
                                  headers={"content-type": "application/json"})
        assert answer.status_code == 422
        assert [(problem["field"], problem["problem"]) for problem in answer.json()["fields"]
                ] == [("body.url", text_forms.NOT_UNICODE)]
        assert (await admin.get("/v1/webhooks/endpoints")).json() == []

    async def test_a_second_registration_is_409_and_unknown_platforms_404(
            self, admin: httpx.AsyncClient) -> None:
        request = {"platform": "desk", "url": URL}
        assert (await admin.post("/v1/webhooks/endpoints", json=request)).status_code == 201
        again = await admin.post("/v1/webhooks/endpoints", json=request)
        assert again.status_code == 409 and "PATCH" in again.text
        for method, path in (("PATCH", "/v1/webhooks/endpoints/nobody"),
                             ("DELETE", "/v1/webhooks/endpoints/nobody"),
                             ("POST", "/v1/webhooks/endpoints/nobody/secret"),
                             ("POST", "/v1/webhooks/dead-letters/msg_nothing/replay")):
            answer = await admin.request(method, path, json={} if method == "PATCH" else None)
            assert answer.status_code == 404, (method, path, answer.text)

    async def test_a_platform_never_issued_a_credential_is_422_naming_it(
            self, admin: httpx.AsyncClient) -> None:
        """It posts no tickets, so its endpoint would never be called: a typo, most
        likely. The answer lists the platforms that have a credential."""
        answer = await admin.post("/v1/webhooks/endpoints",
                                  json={"platform": "dsek", "url": URL})
        assert answer.status_code == 422, answer.text
        [refused] = answer.json()["fields"]
        assert refused["field"] == "body.platform"
        assert "no platform credential was ever issued for 'dsek'" in refused["problem"]
        assert refused["problem"].endswith("platforms with one: desk, other")
        assert (await admin.get("/v1/webhooks/endpoints")).json() == []

    async def test_a_platform_whose_credentials_were_revoked_may_register(
            self, admin: httpx.AsyncClient, database_url: str) -> None:
        """Its tickets still move on, and their callbacks go to its endpoint."""
        engine = db.engine(database_url)
        try:
            keys = Credentials(db.sessions(engine))
            issued, _token = await keys.issue(access.Role.PLATFORM, "gone-desk")
            assert await keys.revoke(issued.credential_id) is not None
        finally:
            await engine.dispose()
        answer = await admin.post("/v1/webhooks/endpoints",
                                  json={"platform": "gone-desk", "url": URL})
        assert answer.status_code == 201, answer.text

    async def test_platforms_may_not_manage_endpoints(self, admin: httpx.AsyncClient,
                                                      database_url: str) -> None:
        platform = credentials.bearer(
            await credentials.issue_token(database_url, "platform", "desk"))
        answer = await admin.get("/v1/webhooks/endpoints", headers=platform)
        assert answer.status_code == 403


class TestDeadLetters:
    async def test_listed_then_replayed_one_and_all(self, admin: httpx.AsyncClient,
                                                    database_url: str) -> None:
        for platform in ("desk", "other"):
            assert (await admin.post("/v1/webhooks/endpoints", json={
                "platform": platform, "url": "https://desk.example.com/hooks"})
                    ).status_code == 201
        engine = db.engine(database_url)
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        await deliveries.enqueue([
            outbox_store.Outgoing(f"msg_{n}", platform, "ticket.routed", f"t-{n}", "{}")
            for n, platform in enumerate(("desk", "desk", "desk", "other"))])
        for n in range(4):
            await deliveries.record_attempt(f"msg_{n}", status=models.DEAD, attempts=3,
                                            next_attempt_at=datetime.now(UTC),
                                            error="HTTP 500")
        await engine.dispose()

        dead = (await admin.get("/v1/webhooks/dead-letters", params={"platform": "desk"})
                ).json()["dead_letters"]
        assert sorted(d["delivery_id"] for d in dead) == ["msg_0", "msg_1", "msg_2"]
        assert {(d["attempts"], d["last_error"]) for d in dead} == {(3, "HTTP 500")}
        assert (await admin.post("/v1/webhooks/dead-letters/msg_1/replay")).json() == {
            "replayed": 1}
        assert (await admin.post("/v1/webhooks/dead-letters/replay",
                                 params={"platform": "desk"})).json() == {"replayed": 2}
        left = (await admin.get("/v1/webhooks/dead-letters")).json()
        assert [d["delivery_id"] for d in left["dead_letters"]] == ["msg_3"]
        assert left["next"] is None
        assert (await admin.post("/v1/webhooks/dead-letters/replay")).json() == {
            "replayed": 1}

    async def test_500_a_page_those_dead_lettered_longest_ago_first_then_the_next(
            self, admin: httpx.AsyncClient, database_url: str) -> None:
        """One more than a page shows: the one dead-lettered last is on the next page,
        and a replay of all takes it too."""
        ids = await self.dead_lettered(admin, database_url, 501)
        first = (await admin.get("/v1/webhooks/dead-letters")).json()
        assert len(first["dead_letters"]) == 500 == outbox_store.LISTED_AT_MOST
        assert first["dead_letters"][0]["delivery_id"] == ids[-1]
        assert ids[0] not in {d["delivery_id"] for d in first["dead_letters"]}
        second = (await admin.get("/v1/webhooks/dead-letters",
                                  params={"since": first["next"]})).json()
        assert [d["delivery_id"] for d in second["dead_letters"]] == [ids[0]]
        assert second["next"] is None
        assert (await admin.post("/v1/webhooks/dead-letters/replay")).json() == {
            "replayed": 501}

    async def test_pages_go_through_every_one_once_in_order(
            self, admin: httpx.AsyncClient, database_url: str) -> None:
        """Pages of 7 across callbacks dead-lettered at the same moment (most of them):
        each once, longest ago first, then by id; one replayed meanwhile (the last one
        shown) leaves the next page where it was."""
        ids = await self.dead_lettered(admin, database_url, 40)
        seen: list[str] = []
        since = None
        while True:
            page = (await admin.get("/v1/webhooks/dead-letters", params={
                "limit": 7, **({} if since is None else {"since": since})})).json()
            seen += [d["delivery_id"] for d in page["dead_letters"]]
            if len(seen) == 7:
                assert (await admin.post(f"/v1/webhooks/dead-letters/{seen[-1]}/replay")
                        ).json() == {"replayed": 1}
            since = page["next"]
            if since is None:
                break
            assert len(page["dead_letters"]) == 7
        assert seen == [ids[-1], *ids[1:-1], ids[0]]

    async def test_a_platforms_pages(self, admin: httpx.AsyncClient,
                                     database_url: str) -> None:
        ids = await self.dead_lettered(admin, database_url, 6, platforms=("desk", "other"))
        first = (await admin.get("/v1/webhooks/dead-letters", params={
            "platform": "other", "limit": 2})).json()
        second = (await admin.get("/v1/webhooks/dead-letters", params={
            "platform": "other", "limit": 2, "since": first["next"]})).json()
        assert [d["delivery_id"] for d in first["dead_letters"] + second["dead_letters"]
                ] == [ids[-1], ids[1], ids[3]]
        assert second["next"] is None

    async def test_one_dead_lettered_late_with_an_earlier_moment_is_on_a_later_page(
            self, admin: httpx.AsyncClient, database_url: str) -> None:
        """A worker that read its clock before a page was read, and committed its dead
        letter after (it waited for the store): a reader paging forward from that page
        still reads it, on the next page, since dead-letterings take their moments in
        the order they commit."""
        assert (await admin.post("/v1/webhooks/endpoints", json={
            "platform": "desk", "url": URL})).status_code == 201
        engine = db.engine(database_url)
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        await deliveries.enqueue([outbox_store.Outgoing(f"msg_{name}", "desk", "ticket.routed", "t",
                                                 "{}") for name in ("a", "b", "c", "late")])
        clock_read = datetime(2026, 12, 1, 9, tzinfo=UTC)
        try:
            for minutes, name in ((0, "a"), (2, "b"), (3, "c")):
                await deliveries.record_attempt(
                    f"msg_{name}", status=models.DEAD, attempts=3, error="HTTP 500",
                    next_attempt_at=clock_read, now=clock_read + timedelta(minutes=minutes))
            first = (await admin.get("/v1/webhooks/dead-letters", params={"limit": 2})
                     ).json()
            assert [d["delivery_id"] for d in first["dead_letters"]] == ["msg_a", "msg_b"]
            await deliveries.record_attempt(  # its clock read before msg_b's
                "msg_late", status=models.DEAD, attempts=3, error="HTTP 500",
                next_attempt_at=clock_read, now=clock_read + timedelta(minutes=1))
        finally:
            await engine.dispose()
        second = (await admin.get("/v1/webhooks/dead-letters", params={
            "limit": 2, "since": first["next"]})).json()
        assert [d["delivery_id"] for d in second["dead_letters"]] == ["msg_c", "msg_late"]
        assert second["next"] is None

    async def test_two_dead_letterings_at_once_take_their_moments_in_commit_order(
            self, admin: httpx.AsyncClient, database_url: str) -> None:
        """The first, its worker's clock later than the second's, is held after its
        statements until the second waits for it (PostgreSQL: for the lock of the
        clock's row), then commits; a page is read; then the second commits. The
        second's moment is after the first's, and the page after the one read holds
        both in commit order: the moment is taken from what the first committed, not
        from a read made before that commit (a SELECT, then an UPDATE, fails here).
        SQLite has one writer at a time anyway: the second's first write waits in its
        busy timeout for the first's commit, or is sent after it."""
        assert (await admin.post("/v1/webhooks/endpoints", json={
            "platform": "desk", "url": URL})).status_code == 201
        engine = db.engine(database_url)
        clock_read = datetime(2026, 12, 1, 9, tzinfo=UTC)
        at = {"msg_a": clock_read, "msg_first": clock_read + timedelta(minutes=5),
              "msg_second": clock_read + timedelta(minutes=1)}
        there = {name: asyncio.Event() for name in at}  # its statements ran
        go = {name: asyncio.Event() for name in at}  # commit

        async def dead_lettered(name: str) -> None:
            await outbox_store.Deliveries(databases.paused_before_commit(
                engine, there=there[name], go=go[name])).record_attempt(
                    name, status=models.DEAD, attempts=3, error="HTTP 500",
                    next_attempt_at=clock_read, now=at[name])

        wrote = asyncio.Event()

        def writing(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            """(SQLite) The second sent its first write: the clock's UPDATE."""
            if statement.lstrip().upper().startswith("UPDATE"):
                wrote.set()

        running: list[asyncio.Future[None]] = []
        try:
            await outbox_store.Deliveries(db.sessions(engine)).enqueue([
                outbox_store.Outgoing(name, "desk", "ticket.routed", "t", "{}")
                for name in at])
            go["msg_a"].set()
            await dead_lettered("msg_a")
            running.append(first := asyncio.ensure_future(dead_lettered("msg_first")))
            await there["msg_first"].wait()
            on_sqlite = database_url.startswith("sqlite")
            if on_sqlite:
                event.listen(engine.sync_engine, "before_cursor_execute", writing)
            running.append(second := asyncio.ensure_future(dead_lettered("msg_second")))
            if on_sqlite:
                await asyncio.wait_for(wrote.wait(), databases.QUEUE_WAIT_SECONDS)
            else:
                await databases.until_one_waits_for_a_lock(engine)
            assert not there["msg_second"].is_set()
            go["msg_first"].set()
            await first
            await there["msg_second"].wait()
            between = (await admin.get("/v1/webhooks/dead-letters", params={"limit": 1})
                       ).json()
            go["msg_second"].set()
            await second
        finally:
            for pause in go.values():  # none left holding a connection
                pause.set()
            await asyncio.gather(*running, return_exceptions=True)
            if event.contains(engine.sync_engine, "before_cursor_execute", writing):
                event.remove(engine.sync_engine, "before_cursor_execute", writing)
            await engine.dispose()
        assert [d["delivery_id"] for d in between["dead_letters"]] == ["msg_a"]
        after = (await admin.get("/v1/webhooks/dead-letters", params={
            "since": between["next"]})).json()
        assert [d["delivery_id"] for d in after["dead_letters"]] == ["msg_first", "msg_second"]
        moments = [datetime.fromisoformat(d["updated_at"]) for d in after["dead_letters"]]
        assert moments[0] == at["msg_first"] < moments[1]
        assert after["next"] is None

    @pytest.mark.parametrize(("params", "field", "said"), [
        ({"limit": "0"}, "query.limit", "from 1 to 500 callbacks a page, not 0"),
        ({"limit": "501"}, "query.limit", "from 1 to 500 callbacks a page, not 501"),
        ({"since": "msg_1"}, "query.since", "the `next` of the page before"),
        ({"since": "12/"}, "query.since", "the `next` of the page before")])
    async def test_a_page_size_out_of_range_or_no_cursor_is_422_naming_the_field(
            self, admin: httpx.AsyncClient, params: dict[str, str], field: str,
            said: str) -> None:
        answer = await admin.get("/v1/webhooks/dead-letters", params=params)
        assert answer.status_code == 422, answer.text
        [refused] = answer.json()["fields"]
        assert refused["field"] == field and said in refused["problem"], refused

    async def test_a_page_is_read_in_the_order_of_the_index_of_each_status_by_last_change(
            self, database_url: str) -> None:
        """From the place the last page ended, in the index's order: nothing read before
        it, nor sorted again (each page would sort every dead callback after it)."""
        place = pages.Place(datetime(2026, 12, 1, 9, tzinfo=UTC), "msg_1")
        [plan] = await plans(database_url, lambda sessions: outbox_store.Deliveries(sessions).page(
            models.DEAD, platform="desk", since=place, limit=10))
        if database_url.startswith("sqlite"):
            assert ("INDEX ix_webhook_deliveries_status_updated (status=? AND updated_at>?)"
                    in plan), plan
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
        else:
            assert " ix_webhook_deliveries_status_updated " in plan, plan
            assert "Index Cond: (((status)::text = 'dead'::text) AND (updated_at >=" in plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan

    @staticmethod
    async def dead_lettered(admin: httpx.AsyncClient, database_url: str, count: int, *,
                            platforms: tuple[str, ...] = ("desk",)) -> list[str]:
        """`count` dead callbacks, of the platforms in turn: the last id dead-lettered
        first, the first last, the others at one moment in between."""
        for platform in platforms:
            assert (await admin.post("/v1/webhooks/endpoints", json={
                "platform": platform, "url": URL})).status_code == 201
        engine = db.engine(database_url)
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        ids = [f"msg_{n:03}" for n in range(count)]
        await deliveries.enqueue([
            outbox_store.Outgoing(delivery_id, platforms[n % len(platforms)], "ticket.routed", "t",
                           "{}") for n, delivery_id in enumerate(ids)])
        dead_at = datetime(2026, 12, 1, 9, tzinfo=UTC)
        async with engine.begin() as connection:
            for delivery_id, when in ((None, dead_at), (ids[-1], dead_at - timedelta(hours=1)),
                                      (ids[0], dead_at + timedelta(hours=1))):
                rows = models.WebhookDeliveryRow.__table__.update().values(
                    status=models.DEAD, updated_at=when)
                if delivery_id is not None:
                    rows = rows.where(models.WebhookDeliveryRow.delivery_id == delivery_id)
                await connection.execute(rows)
        await engine.dispose()
        return ids


class TestRetention:
    async def test_sent_and_dead_callbacks_are_purged_pending_ones_stay(
            self, database_url: str) -> None:
        engine = db.engine(database_url)
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        await deliveries.enqueue([outbox_store.Outgoing(f"msg_{status}", "desk", "ticket.routed",
                                                 "t", "{}")
                                  for status in (models.PENDING, models.DELIVERED, models.DEAD)])
        for status in (models.DELIVERED, models.DEAD):
            await deliveries.record_attempt(f"msg_{status}", status=status, attempts=1,
                                            next_attempt_at=datetime.now(UTC), error=None)
        deleted = await retention.purge_past_retention(
            {"webhook_deliveries": deliveries}, now=datetime.now(UTC), chunk=1,
            retention=retention.Retention.of_days(ticket_states=0, timelines=1,
                                                  idempotency_keys=1))
        assert deleted == {"webhook_deliveries": 2}
        assert await deliveries.counts() == {("desk", models.PENDING): 1}
        await engine.dispose()
