"""What admins did to credentials and webhook endpoints is kept with who did it, and read
back by admins (`GET /v1/admin-actions`), on a real SQL store: an action done is recorded
in its own transaction, an action refused or failed is not, and the log line names the
credential, never a token, a secret or a whole URL (services/core/admin_actions.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.core import (
    access,
    admin_actions,
    admin_actions_api,
    credentials_api,
    db,
    http,
    service_context,
)
from services.core.credentials import Credentials
from services.webhooks import api as webhooks_api
from services.webhooks import endpoint_store, outbox_store
from tests import credentials

URL = "https://desk.example.com/hooks/routing?token=receivers-own-secret"


@dataclass
class Admin:
    client: httpx.AsyncClient
    keys: Credentials
    kept: admin_actions.AdminActions
    actor: str  # how the actions name the admin's credential


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Admin]:
    engine = db.engine(database_url)
    sessions = db.sessions(engine)
    app = FastAPI()
    for router in (credentials_api.api, webhooks_api.api, admin_actions_api.api):
        app.include_router(router)
    http.install(app, ready=lambda: True)
    kept = admin_actions.AdminActions(sessions)
    service_context.of(app).provide(
        endpoint_store.Endpoints(sessions, secret_overlap=timedelta(hours=1)),
        outbox_store.Deliveries(sessions), kept)
    try:
        async with credentials.authenticating(app, database_url) as keys:
            issued, token = await keys.issue(access.Role.ADMIN, None, label="tests")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://router",
                                         headers=credentials.bearer(token)) as client:
                yield Admin(client, keys, kept, f"admin credential {issued.credential_id}")
    finally:
        await engine.dispose()


async def actions(admin: Admin, **params: str) -> list[dict[str, str]]:
    answer = await admin.client.get("/v1/admin-actions", params=params)
    assert answer.status_code == 200, answer.text
    return [{key: action[key] for key in ("action", "target", "actor", "change")}
            for action in answer.json()]


class TestWhatIsKept:
    async def test_each_action_with_its_actor_newest_first(self, admin: Admin) -> None:
        issued = await admin.client.post("/v1/credentials", json={
            "role": "platform", "subject": "desk", "label": "desk's key",
            "rate_limit": "100/second"})
        credential_id = issued.json()["credential_id"]
        await admin.client.patch(f"/v1/credentials/{credential_id}", json={
            "label": "Jane Doe's desk", "rate_limit": "500/second",
            "byte_rate_limit": "16MiB/second"})
        await admin.client.patch(f"/v1/credentials/{credential_id}",  # no-op
                                 json={"rate_limit": "500/second"})
        await admin.client.delete(f"/v1/credentials/{credential_id}")
        await admin.client.post("/v1/webhooks/endpoints", json={"platform": "desk", "url": URL})
        await admin.client.patch("/v1/webhooks/endpoints/desk", json={
            "url": "https://other.example.net:8443/hooks", "enabled": False})
        await admin.client.patch("/v1/webhooks/endpoints/desk", json={"enabled": False})  # no-op
        await admin.client.post("/v1/webhooks/endpoints/desk/secret")
        await admin.client.post("/v1/webhooks/endpoints/desk/secret", params={"force": "true"})
        await admin.client.delete("/v1/webhooks/endpoints/desk")
        by = admin.actor
        assert await actions(admin) == [
            {"action": "webhook_endpoint_deleted", "target": "desk", "actor": by, "change": ""},
            {"action": "webhook_secret_rotated", "target": "desk", "actor": by,
             "change": "forced: the current secret replaced"},
            {"action": "webhook_secret_rotated", "target": "desk", "actor": by, "change": ""},
            {"action": "webhook_endpoint_changed", "target": "desk", "actor": by,
             "change": "url https://other.example.net:8443/..., disabled"},
            {"action": "webhook_endpoint_registered", "target": "desk", "actor": by,
             "change": "url https://desk.example.com/..., enabled"},
            {"action": "credential_revoked", "target": credential_id, "actor": by,
             "change": ""},
            # What a label says is never kept: an admin's free text, it may name someone.
            {"action": "credential_changed", "target": credential_id, "actor": by,
             "change": "label changed, rate_limit 100/second -> 500/second,"
                       " byte_rate_limit default -> 16MiB/second"},
            {"action": "credential_issued", "target": credential_id, "actor": by,
             "change": "role platform, subject desk, rate_limit 100/second"},
            # The test's own admin credential, issued straight in the store.
            {"action": "credential_issued", "target": by.rpartition(" ")[2],
             "actor": admin_actions.COMMAND_LINE, "change": "role admin"},
        ]
        assert len(await actions(admin, limit="2")) == 2

    async def test_what_was_refused_or_found_nothing_is_not_kept(self, admin: Admin) -> None:
        await admin.keys.issue(access.Role.PLATFORM, "desk")  # whose endpoint it registers
        before = await admin.kept.listed()
        refused = await admin.client.post("/v1/credentials", json={
            "role": "platform", "subject": "Not A Name"})
        unknown = await admin.client.delete("/v1/credentials/0123456789ab")
        desk = (await admin.client.get("/v1/credentials", params={"subject": "desk"})
                ).json()[0]["credential_id"]
        changes = [await admin.client.patch(f"/v1/credentials/{credential_id}", json=body)
                   for credential_id, body in (
                       ("0123456789ab", {"label": "x"}), (desk, {"rate_limit": "fast"}),
                       (desk, {"role": "admin"}), (desk, {}))]
        assert [answer.status_code for answer in changes] == [404, 422, 422, 200]
        no_endpoint = await admin.client.patch("/v1/webhooks/endpoints/nobody",
                                               json={"enabled": False})
        await admin.client.post("/v1/webhooks/endpoints", json={"platform": "desk", "url": URL})
        twice = await admin.client.post("/v1/webhooks/endpoints",
                                        json={"platform": "desk", "url": URL})
        assert (refused.status_code, unknown.status_code, no_endpoint.status_code,
                twice.status_code) == (422, 404, 404, 409)
        # An admin revoking its own credential: kept; asking again, it is refused.
        own = admin.actor.rpartition(" ")[2]
        revoked = await admin.client.delete(f"/v1/credentials/{own}")
        again = await admin.client.delete(f"/v1/credentials/{own}")
        assert (revoked.status_code, again.status_code) == (200, 401)
        after = await admin.kept.listed()
        assert [(action.action, action.target) for action in after[:2]] == [
            (admin_actions.Action.CREDENTIAL_REVOKED, own),
            (admin_actions.Action.ENDPOINT_REGISTERED, "desk")]
        assert len(after) == len(before) + 2

    async def test_the_log_line_names_the_credential_not_secrets(
            self, admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
        await admin.keys.issue(access.Role.PLATFORM, "desk")  # whose endpoint it registers
        with caplog.at_level(logging.INFO, logger=admin_actions.__name__):
            registered = await admin.client.post("/v1/webhooks/endpoints",
                                                 json={"platform": "desk", "url": URL})
        [line] = [record for record in caplog.records if record.name == admin_actions.__name__]
        assert (line.getMessage(), line.action, line.target, line.actor, line.change) == (  # type: ignore[attr-defined]
            "admin action", "webhook_endpoint_registered", "desk", admin.actor,
            "url https://desk.example.com/..., enabled")
        said = str(line.__dict__)
        assert "receivers-own-secret" not in said
        assert registered.json()["secret"] not in said


class TestWhoMayRead:
    async def test_admins_only(self, admin: Admin) -> None:
        platform = await credentials.headers_of(admin.keys, "platform", "desk")
        department = await credentials.headers_of(admin.keys, "department", "public_sector")
        for headers in (platform, department):
            answer = await admin.client.get("/v1/admin-actions", headers=headers)
            assert answer.status_code == 403, answer.text

    async def test_an_unknown_query_parameter_is_ignored(self, admin: Admin) -> None:
        """README, Hostile input: unknown query parameters are ignored (unknown body
        fields are refused)."""
        await admin.client.post("/v1/credentials", json={"role": "platform", "subject": "desk"})
        kept = await actions(admin)
        assert len(kept) == 2  # the test's own admin credential, then the platform's
        assert await actions(admin, utm_source="mail") == kept
        assert await actions(admin, limit="1", utm_source="mail") == kept[:1]

    async def test_a_since_that_is_no_moment_is_422_naming_it(self, admin: Admin) -> None:
        answer = await admin.client.get("/v1/admin-actions", params={"since": "yesterday"})
        assert answer.status_code == 422, answer.text
        assert "query.since" in answer.text
