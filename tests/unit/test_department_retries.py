"""When the department tool sends a report again (services/departments/retries.py): the
router unreachable or asking for it with Retry-After, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from services.departments import queue, retries

REQUEST = httpx.Request("POST", "http://router.test/v1/tickets/t-1/events")


def answered(status: int, retry_after: str | None = None) -> httpx.HTTPStatusError:
    # As bytes off the wire (read as latin-1): a proxy may send anything.
    headers = [] if retry_after is None else [(b"Retry-After", retry_after.encode("latin-1"))]
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.HTTPStatusError(f"{status}", request=REQUEST, response=response)


class TestWorthAnotherTry:
    @pytest.mark.parametrize("error", [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ReadTimeout("no answer", request=REQUEST),
        httpx.RemoteProtocolError("closed mid-answer", request=REQUEST)])
    def test_the_router_unreachable_or_silent(self, error: httpx.TransportError) -> None:
        assert retries.worth_another_try(error)

    @pytest.mark.parametrize("status", [502, 503, 504])
    def test_unavailable_with_or_without_retry_after(self, status: int) -> None:
        assert retries.worth_another_try(answered(status))
        assert retries.worth_another_try(answered(status, "5"))

    @pytest.mark.parametrize("status", [409, 429])
    def test_an_answer_asking_for_it(self, status: int) -> None:
        assert retries.worth_another_try(answered(status, "5"))

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429, 500])
    def test_not_another_answer_without_retry_after(self, status: int) -> None:
        assert not retries.worth_another_try(answered(status))

    @pytest.mark.parametrize("error", [
        httpx.UnsupportedProtocol("no such scheme", request=REQUEST),
        httpx.LocalProtocolError("illegal header value", request=REQUEST),
        ValueError("a bug")])
    def test_not_a_request_that_cannot_be_sent_nor_anything_else(
            self, error: Exception) -> None:
        assert not retries.worth_another_try(error)


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

    @pytest.mark.parametrize("value", ["Wed, 21 Oct 2026 07:28:00 GMT", "\u00b2", "-1",
                                       "1.5", ""])
    def test_a_retry_after_that_is_no_whole_number_of_seconds_counts_as_none(
            self, value: str) -> None:
        assert retries.wait_before(answered(503, value), tries=2) == 1
        assert not retries.worth_another_try(answered(409, value))


class Router:
    """The router's answers to the tool's tries, in turn (the last one repeated)."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.keys: list[str] = []
        self.slept: list[float] = []

    def post(self, url: str, *, json: object, headers: dict[str, str],
             timeout: float) -> httpx.Response:
        self.keys.append(headers["Idempotency-Key"])
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def receipt(status: int, body: dict[str, str], retry_after: str | None = None
            ) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


class TestAReportSentAgain:
    def test_under_one_key_until_the_router_takes_it(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        router = Router(httpx.ConnectError("refused", request=REQUEST),
                        receipt(409, {"error": "in_progress"}, retry_after="2"),
                        receipt(202, {"ticket_id": "t-1", "event_id": "e-1"}))
        monkeypatch.setattr(queue.httpx, "post", router.post)
        told: list[tuple[str, float]] = []
        answer = queue.report("http://router.test", "t-1", "responded", department=None,
                              token="rt", idempotency_key="k-1", sleep=router.slept.append,
                              on_retry=lambda error, wait: told.append(
                                  (type(error).__name__, wait)))
        assert answer == {"ticket_id": "t-1", "event_id": "e-1"}
        assert router.keys == ["k-1"] * 3
        assert router.slept == [0.5, 2]
        assert told == [("ConnectError", 0.5), ("HTTPStatusError", 2)]

    def test_a_final_answer_is_not_sent_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        router = Router(receipt(403, {"error": "forbidden"}))
        monkeypatch.setattr(queue.httpx, "post", router.post)
        with pytest.raises(httpx.HTTPStatusError):
            queue.report("http://router.test", "t-1", "resolved", department=None,
                         token="rt", idempotency_key="k-1", sleep=router.slept.append)
        assert (len(router.keys), router.slept) == (1, [])

    def test_without_a_key_it_is_sent_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        answer = receipt(503, {"error": "unavailable"}, retry_after="1")
        sent: list[str] = []

        def post(url: str, *, json: object, headers: dict[str, str],
                 timeout: float) -> httpx.Response:
            sent.append(url)
            return answer

        monkeypatch.setattr(queue.httpx, "post", post)
        slept: list[float] = []
        with pytest.raises(httpx.HTTPStatusError):
            queue.report("http://router.test", "t-1", "resolved", department=None,
                         token="rt", sleep=slept.append)
        assert (len(sent), slept) == (1, [])

    def test_no_try_starts_past_the_time_given(self, monkeypatch: pytest.MonkeyPatch) -> None:
        router = Router(receipt(503, {"error": "unavailable"}, retry_after="1"))
        monkeypatch.setattr(queue.httpx, "post", router.post)
        with pytest.raises(httpx.HTTPStatusError):
            queue.report("http://router.test", "t-1", "resolved", department=None,
                         token="rt", idempotency_key="k-1", sleep=router.slept.append,
                         give_up_after=0.5)  # the next wait (1 s) would pass it
        assert (len(router.keys), router.slept) == (1, [])
