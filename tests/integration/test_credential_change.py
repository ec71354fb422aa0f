"""A credential changed over the credentials API (`PATCH /v1/credentials/{id}`) on the
real SQL store, taken by the real intake publishing on the real broker: a platform key
given a lower rate is counted anew against it, at once on the service that changed it
(what it sent under the old rate is not counted, nor stops it); a bad
value, its role or subject, an unknown or a revoked key are refused naming what was
wrong, and nothing changes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.core import access, admin_actions, db
from services.core import credentials as store
from services.core.admin_actions import Action
from services.core.credentials import Credential, Credentials, Revoked
from tests.credential_apis import CredentialApis, credential_apis


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[CredentialApis]:
    # The credentials' cache kept, as the router's is (AUTH_CACHE_SECONDS, 5 s).
    async with credential_apis(database_url, kafka_bootstrap, tmp_path) as apis:
        yield apis


class TestAChangedRateLimit:
    async def test_a_lower_rate_counts_anew_at_once(self, router: CredentialApis) -> None:
        # A day's windows: their end, where the last window's count weighs less, is far off.
        credential_id, key = await router.platform_key(rate_limit="100/day")
        assert await router.posts(key, 3) == [202, 202, 202]  # its entry now cached

        changed = await router.change(credential_id, {"rate_limit": "2/day"})

        assert changed.status_code == 200, changed.text
        assert changed.json() == await router.credential(credential_id)
        assert changed.json()["rate_limit"] == "2/day"
        answers = await router.posts(key, 3)
        assert answers == [202, 202, 429]  # 2 more, whatever it sent before

    async def test_null_is_the_services_default_again(self, router: CredentialApis) -> None:
        credential_id, key = await router.platform_key(rate_limit="1/day")
        assert await router.posts(key, 2) == [202, 429]

        changed = await router.change(credential_id, {"rate_limit": None, "label": "more"})

        assert (changed.json()["rate_limit"], changed.json()["label"]) == (None, "more")
        assert await router.posts(key, 2) == [202, 202]  # INTAKE_RATE_LIMIT, 100/second

    async def test_a_field_left_out_stays(self, router: CredentialApis) -> None:
        credential_id, _key = await router.platform_key(
            rate_limit="100/second", byte_rate_limit="16MiB/second", label="desk")
        changed = await router.change(credential_id, {"byte_rate_limit": "32MiB/second"})
        assert {name: changed.json()[name] for name in (
            "role", "subject", "label", "rate_limit", "byte_rate_limit")} == {
            "role": "platform", "subject": "helpdesk", "label": "desk",
            "rate_limit": "100/second", "byte_rate_limit": "32MiB/second"}


class TestARefusedChange:
    @pytest.mark.parametrize(("body", "field", "problem"), [
        ({"rate_limit": "fast"}, "body.rate_limit", "should be a rate such as 200/second"),
        ({"byte_rate_limit": "512KiB/second"}, "body.byte_rate_limit",
         "at least 1MiB a window, the largest body a request may send"),
        ({"label": None}, "body.label", "Input should be a valid string"),
        ({"role": "admin"}, "body.role",
         "a credential's role cannot change: issue a new credential with the role wanted,"
         " move its holder to it, and revoke this one"),
        ({"subject": "other-desk", "rate_limit": "5/second"}, "body.subject",
         "a credential's subject cannot change: issue a new credential with the subject"
         " wanted, move its holder to it, and revoke this one"),
    ])
    async def test_a_bad_change_is_422_naming_the_field(
            self, router: CredentialApis, body: dict[str, Any], field: str, problem: str) -> None:
        credential_id, _key = await router.platform_key(rate_limit="100/second")
        before = await router.credential(credential_id)

        answer = await router.change(credential_id, body)

        assert answer.status_code == 422, answer.text
        [refused] = answer.json()["fields"]
        assert refused["field"] == field
        assert refused["problem"].startswith(problem)
        assert await router.credential(credential_id) == before

    async def test_an_unknown_key_is_404_as_a_revocation_says_it(
            self, router: CredentialApis) -> None:
        changed = await router.change("0123456789ab", {"label": "x"})
        revoked = await router.client.delete("/v1/credentials/0123456789ab",
                                             headers=router.admin)
        assert (changed.status_code, changed.json()) == (404, {
            "error": "not_found", "detail": "no credential '0123456789ab'"})
        assert revoked.json() == changed.json()

    async def test_a_revoked_key_is_409(self, router: CredentialApis) -> None:
        credential_id, _key = await router.platform_key()
        await router.client.delete(f"/v1/credentials/{credential_id}", headers=router.admin)

        answer = await router.change(credential_id, {"rate_limit": "500/second"})

        assert (answer.status_code, answer.json()) == (409, {
            "error": "revoked", "detail": f"credential '{credential_id}' is revoked: issue"
                                          " a new one with the label and limits wanted"})
        assert (await router.credential(credential_id))["rate_limit"] is None

    async def test_only_admins_change_keys(self, router: CredentialApis) -> None:
        credential_id, key = await router.platform_key()
        answer = await router.client.patch(f"/v1/credentials/{credential_id}",
                                           json={"rate_limit": "100000/second"}, headers=key)
        assert answer.status_code == 403
        assert (await router.credential(credential_id))["rate_limit"] is None


class TestWritersAtOnce:
    """A change held after it read the key, while another admin revokes or changes it on
    another service (an engine of its own): the second waits for the first, or the first
    sees the second's, on SQLite as on PostgreSQL; what the admin actions keep, in their
    order, says what happened to the key."""

    @staticmethod
    async def held_change(database_url: str, monkeypatch: pytest.MonkeyPatch,
                          other: Callable[[Credentials, str], Awaitable[object]]
                          ) -> tuple[object, str, list[admin_actions.AdminAction]]:
        """What a change of the key's rate to 5/second returns, read and then held until
        `other` has run on another engine or has had a second to run (it may be waiting
        for the change: either way is right); the key's id, and the actions kept, oldest
        first."""
        engine = db.engine(database_url)
        try:
            keys = Credentials(db.sessions(engine))
            issued, _token = await keys.issue(access.Role.PLATFORM, "helpdesk")
            read, go_on = threading.Event(), threading.Event()
            said = store.change_said

            def held(before: Credential, changes: Mapping[str, str | None]) -> str:
                read.set()
                go_on.wait()
                return said(before, changes)

            monkeypatch.setattr(store, "change_said", held)

            async def change() -> object:
                engine = db.engine(database_url)  # another service's, on another loop
                try:
                    return await Credentials(db.sessions(engine)).change(
                        issued.credential_id, {"rate_limit": "5/second"})
                finally:
                    await engine.dispose()

            changing = asyncio.ensure_future(asyncio.to_thread(asyncio.run, change()))
            await asyncio.to_thread(read.wait)
            monkeypatch.setattr(store, "change_said", said)
            doing = asyncio.ensure_future(other(keys, issued.credential_id))
            await asyncio.wait([doing], timeout=1)  # done, or waiting for the change
            go_on.set()
            changed, _ = await asyncio.gather(changing, doing)
            kept = await admin_actions.AdminActions(db.sessions(engine)).listed()
            return changed, issued.credential_id, [
                action for action in reversed(kept) if action.target == issued.credential_id]
        finally:
            go_on.set()
            await engine.dispose()

    async def test_a_revocation_waits_for_the_change_or_the_change_sees_it(
            self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        changed, credential_id, kept = await self.held_change(
            database_url, monkeypatch, lambda keys, key: keys.revoke(key))

        actions = [action.action for action in kept]
        if isinstance(changed, Revoked):  # the revocation came first
            assert actions == [Action.CREDENTIAL_ISSUED, Action.CREDENTIAL_REVOKED]
        else:  # the change came first, and was revoked after
            assert isinstance(changed, Credential)
            assert changed.revoked_at is None
            assert actions == [Action.CREDENTIAL_ISSUED, Action.CREDENTIAL_CHANGED,
                               Action.CREDENTIAL_REVOKED]
        [listed] = [c for c in await self.listed(database_url) if
                    c.credential_id == credential_id]
        assert listed.revoked_at is not None

    async def test_two_changes_one_after_the_other(
            self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        changed, credential_id, kept = await self.held_change(
            database_url, monkeypatch,
            lambda keys, key: keys.change(key, {"rate_limit": "7/second"}))

        assert isinstance(changed, Credential)
        # Each change's "before" is what the one kept before it left.
        assert [action.change for action in kept[1:]] in (
            ["rate_limit default -> 5/second", "rate_limit 5/second -> 7/second"],
            ["rate_limit default -> 7/second", "rate_limit 7/second -> 5/second"])
        [listed] = [c for c in await self.listed(database_url) if
                    c.credential_id == credential_id]
        assert listed.rate_limit == kept[-1].change.rsplit(" ", 1)[-1]

    @staticmethod
    async def listed(database_url: str) -> Sequence[Credential]:
        engine = db.engine(database_url)
        try:
            return await Credentials(db.sessions(engine)).listed()
        finally:
            await engine.dispose()
