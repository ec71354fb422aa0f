"""Two admins changing one configuration (`/v1/routing-table`, `/v1/segment-rules`) over
HTTP, on SQLite and PostgreSQL: the GET answers an ETag naming the version in force, a
change sent with If-Match is put in force only while that version is (else 412 naming
the one in force, nothing changed), checked in the store's transaction that writes, so
of two changes at once on one version exactly one is put in force."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import config_store
from tests.config_apis import KINDS, Service, config_api, copy_of, put


@pytest.fixture(params=list(KINDS))
async def service(request: pytest.FixtureRequest, tmp_path: Path, database_url: str,
                  kafka_bootstrap: str) -> AsyncIterator[Service]:
    config = KINDS[request.param]
    async with config_api(config, copy_of(config, tmp_path / "config"), database_url,
                          kafka_bootstrap) as service:
        yield service


async def etag_in_force(service: Service) -> str:
    """What an admin reads: the ETag of the configuration's GET."""
    response = await service.client.get(service.config.path)
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{response.json()["version_id"]}"'
    return response.headers["ETag"]


async def versions(service: Service) -> list[dict[str, object]]:
    return (await service.client.get(f"{service.config.path}/versions")).json()  # type: ignore[no-any-return]


class TestETag:
    async def test_the_get_and_the_put_name_the_version_in_force(
            self, service: Service) -> None:
        assert await etag_in_force(service) == f'"{service.live.version_id}"'
        response = await put(service, service.upload)
        assert response.status_code == 200, response.text
        newest = (await versions(service))[0]
        assert response.headers["ETag"] == f'"{newest["version_id"]}"'
        assert await etag_in_force(service) == response.headers["ETag"]


class TestIfMatch:
    async def test_a_change_on_a_version_replaced_since_is_412_and_changes_nothing(
            self, service: Service) -> None:
        """Admins A and B both read one version; A's change is put in force, and B's,
        made on the version A replaced, is refused rather than undo A's."""
        read = await etag_in_force(service)  # A's and B's
        first = await put(service, service.edited("by-a"), headers={"If-Match": read})
        assert first.status_code == 200, first.text
        second = await put(service, service.edited("by-b"), headers={"If-Match": read})
        assert second.status_code == 412, second.text
        answer = second.json()
        assert answer["error"] == "precondition_failed"
        assert second.headers["ETag"] == answer["etag"] == first.headers["ETag"]
        assert f'"{answer["version_id_in_force"]}"' == first.headers["ETag"]
        assert answer["version_in_force"].startswith("by-a+")
        assert "GET it again, merge your change into it" in answer["detail"]
        assert service.live.current.version.startswith("by-a+")
        assert len(await versions(service)) == 2  # the seed and A's
        # B reads again and sends the merged change with the new ETag: put in force.
        again = await put(service, service.edited("by-a-and-b"),
                          headers={"If-Match": await etag_in_force(service)})
        assert again.status_code == 200, again.text

    async def test_of_two_changes_at_once_on_one_version_exactly_one_is_put_in_force(
            self, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
        """A real race: the two uploads are held until both are inside their store
        transaction, before either takes the lock that orders the writers, so a check of
        If-Match made anywhere before that lock would let both through."""
        versions_of = service.live.versions
        take_lock = versions_of._lock
        both_inside = asyncio.Barrier(2)

        async def lock_once_both_are_inside(session: AsyncSession) -> None:
            await both_inside.wait()
            await take_lock(session)

        monkeypatch.setattr(versions_of, "_lock", lock_once_both_are_inside)
        read = await etag_in_force(service)
        answers = await asyncio.gather(*(
            put(service, service.edited(f"at-once-{n}"), headers={"If-Match": read})
            for n in (1, 2)))
        assert sorted(answer.status_code for answer in answers) == [200, 412], [
            answer.text for answer in answers]
        won = next(answer for answer in answers if answer.status_code == 200)
        lost = next(answer for answer in answers if answer.status_code == 412)
        assert lost.headers["ETag"] == won.headers["ETag"]
        newest, _seed = await versions(service)
        assert f'"{newest["version_id"]}"' == won.headers["ETag"]
        assert newest["in_force"] is True

    async def test_a_change_on_a_version_another_instance_replaced_is_412(
            self, service: Service) -> None:
        """The other admin's change went to another instance, not announced here yet:
        the store says what is in force, and this instance catches up with it, so the
        GET that follows shows it."""
        read = await etag_in_force(service)
        elsewhere = service.edited("elsewhere")
        other, _ = await service.live.versions.put_in_force(
            config_store.Candidate(
                text=elsewhere, author="admin credential other", comment="",
                version=(await service.live.validate(elsewhere, source="other")).version))
        response = await put(service, service.edited("here"), headers={"If-Match": read})
        assert response.status_code == 412, response.text
        assert response.json()["version_id_in_force"] == other.version_id
        assert await etag_in_force(service) == f'"{other.version_id}"'

    @pytest.mark.parametrize("if_match", [None, "*"])
    async def test_without_if_match_or_with_a_star_the_change_is_put_in_force(
            self, service: Service, if_match: str | None) -> None:
        await put(service, service.edited("meanwhile"))
        response = await put(service, service.edited("anyway"),
                             headers={"If-Match": if_match} if if_match else None)
        assert response.status_code == 200, response.text
        assert service.live.current.version.startswith("anyway+")

    async def test_a_list_naming_the_version_in_force_is_put_in_force(
            self, service: Service) -> None:
        read = await etag_in_force(service)
        response = await put(service, service.upload,
                             headers={"If-Match": f'W/{read}, "older", {read}'})
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("if_match", ["W/{read}", '"not-a-version"'])
    async def test_a_weak_or_unknown_tag_matches_no_version(
            self, service: Service, if_match: str) -> None:
        read = await etag_in_force(service)
        response = await put(service, service.upload,
                             headers={"If-Match": if_match.format(read=read)})
        assert response.status_code == 412, response.text
        assert len(await versions(service)) == 1

    @pytest.mark.parametrize("if_match", ["{id}", '"{id}" "{id}"', "", '"{id}'])
    async def test_a_malformed_if_match_is_422_naming_the_header(
            self, service: Service, if_match: str) -> None:
        response = await put(service, service.upload, headers={
            "If-Match": if_match.format(id=service.live.version_id)})
        assert response.status_code == 422, response.text
        [problem] = response.json()["fields"]
        assert problem["field"] == "header.If-Match"
        assert "If-Match takes the ETag a GET answered, quoted" in problem["problem"]
        assert len(await versions(service)) == 1

    async def test_a_rollback_on_a_version_replaced_since_is_412(
            self, service: Service) -> None:
        seed = await etag_in_force(service)
        replaced = await put(service, service.edited("replaced"))
        path = f"{service.config.path}/versions/{seed.strip(chr(34))}/rollback"
        refused = await service.client.post(path, json={}, headers={"If-Match": seed})
        assert refused.status_code == 412, refused.text
        assert refused.headers["ETag"] == replaced.headers["ETag"]
        rolled = await service.client.post(path, json={},
                                           headers={"If-Match": replaced.headers["ETag"]})
        assert rolled.status_code == 200, rolled.text
        assert rolled.headers["ETag"] == f'"{rolled.json()["version"]["version_id"]}"'
