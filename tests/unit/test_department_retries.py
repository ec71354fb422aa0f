"""When the department tool sends a report again (services/departments/retries.py): the
router unreachable or asking for it with Retry-After, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from services.departments import retries

REQUEST = httpx.Request("POST", "http://router.test/v1/tickets/t-1/events")


def answered(status: int, retry_after: str | None = None) -> httpx.HTTPStatusError:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.HTTPStatusError(f"{status}", request=REQUEST, response=response)


class TestWorthAnotherTry:
    @pytest.mark.parametrize("error", [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ReadTimeout("no answer", request=REQUEST),
        httpx.RemoteProtocolError("closed mid-answer", request=REQUEST)])
    def test_the_router_unreachable_or_silent(self, error: httpx.TransportError) -> None:
        assert retries.worth_another_try(error)

    @pytest.mark.parametrize("status", [503, 409, 429])
    def test_an_answer_asking_for_it(self, status: int) -> None:
        assert retries.worth_another_try(answered(status, "5"))

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 503])
    def test_not_an_answer_without_retry_after(self, status: int) -> None:
        assert not retries.worth_another_try(answered(status))

    def test_not_anything_else(self) -> None:
        assert not retries.worth_another_try(ValueError("a bug"))


class TestWaitBefore:
    def test_as_long_as_the_router_asks(self) -> None:
        assert retries.wait_before(answered(409, "3"), tries=1) == 3

    def test_never_longer_than_the_longest_wait(self) -> None:
        assert retries.wait_before(answered(503, "3600"), tries=1) \
            == retries.LONGEST_WAIT_SECONDS

    def test_unreachable_doubles_from_half_a_second(self) -> None:
        error = httpx.ConnectError("refused", request=REQUEST)
        assert [retries.wait_before(error, tries) for tries in range(1, 7)] == [
            0.5, 1, 2, 4, 8, retries.LONGEST_WAIT_SECONDS]

    def test_a_retry_after_that_is_no_number_of_seconds_counts_as_none(self) -> None:
        assert retries.wait_before(answered(503, "Wed, 21 Oct 2026 07:28:00 GMT"),
                                   tries=2) == 1
