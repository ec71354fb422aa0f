"""A key's own budget of body bytes (`byte_rate_limit`), issued over the credentials API
on the real SQL store and taken by the real intake publishing on the real broker: a key
given a small one is refused 429 `byte_rate_limited` where a key on the service's default
(INTAKE_BYTE_RATE_LIMIT) is served; one the intake could not count by is refused 422
naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.credential_apis import CredentialApis, credential_apis

HALF_AND_MORE = 600_000  # two are over 1 MiB


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[CredentialApis]:
    # The service's default as shipped (4MiB/second), the request rate far off.
    async with credential_apis(database_url, kafka_bootstrap, tmp_path,
                               intake_rate_limit="1000/minute") as apis:
        yield apis


class TestAKeysOwnBudgetOfBodyBytes:
    async def test_a_key_given_a_small_budget_is_refused_where_the_default_serves(
            self, router: CredentialApis) -> None:
        # 1 MiB a day: the least a budget may be, its window's end far off.
        _small_id, small = await router.platform_key(byte_rate_limit="1MiB/day")
        _default_id, default = await router.platform_key()

        answers = [await router.post_ticket(small, HALF_AND_MORE) for _ in range(2)]

        assert [answer.status_code for answer in answers] == [202, 429]
        assert answers[-1].json()["error"] == "byte_rate_limited"
        assert answers[-1].json()["detail"].endswith(
            "over this credential's budget of 1MiB/day (its own byte_rate_limit);"
            f" retry after {answers[-1].headers['Retry-After']}s")
        # 1.2 MB within a second, under the default's 4 MiB a second, whenever sent.
        served = [await router.post_ticket(default, HALF_AND_MORE) for _ in range(2)]
        assert [answer.status_code for answer in served] == [202, 202]

    async def test_the_key_shows_its_budget(self, router: CredentialApis) -> None:
        await router.platform_key(byte_rate_limit="16MiB/second")
        listed = await router.listed()
        assert [c["byte_rate_limit"] for c in listed if c["role"] == "platform"] == [
            "16MiB/second"]

    @pytest.mark.parametrize(("written", "problem"), [
        ("512KiB/second", "at least 1MiB a window, the largest body a request may send"
                          " (1048576 bytes), or such a body is never taken; a number of bytes"
                          " a window, such as 4MiB/second, 240 MiB per minute or"
                          " 1048576/second: units B, KiB, MiB, GiB as written, the window"
                          " in lower case; one rate, at most one space between its parts"
                          " ('per' takes one each side), none around it"),
        ("4 megabytes a second", "should be a number of bytes a window, such as 4MiB/second"),
    ])
    async def test_a_bad_budget_is_refused_naming_the_field(
            self, router: CredentialApis, written: str, problem: str) -> None:
        answer = await router.issue({"role": "platform", "subject": "helpdesk",
                                     "byte_rate_limit": written})
        assert answer.status_code == 422
        [field] = answer.json()["fields"]
        assert field["field"] == "body.byte_rate_limit"
        assert field["problem"].startswith(problem)
        assert [c["role"] for c in await router.listed()] == ["admin"]  # none issued
