"""The command-line clients ask for a report again while its credential's earlier one
is under way (429 with Retry-After), as Retry-After says, for a bounded time."""

from __future__ import annotations

import httpx

from services.core import report_client


def answers(*statuses: tuple[int, str | None]) -> list[httpx.Response]:
    return [httpx.Response(status, headers={"Retry-After": wait} if wait else {})
            for status, wait in statuses]


class Clock:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def ask(queued: list[httpx.Response], clock: Clock) -> tuple[int, int]:
    """(the status it ends with, requests sent)."""
    sent = []

    def send() -> httpx.Response:
        sent.append(1)
        return queued.pop(0)

    final = report_client.asked_in_turn(send, sleep=clock.sleep, clock=lambda: clock.now)
    return final.status_code, len(sent)


def test_asked_again_while_in_progress_waiting_as_retry_after_says() -> None:
    clock = Clock()
    assert ask(answers((429, "5"), (429, "30"), (429, "0"), (200, None)), clock) == (200, 4)
    assert clock.slept == [5.0, report_client.LONGEST_WAIT_SECONDS, 1.0]


def test_other_answers_are_final() -> None:
    for status, wait in ((200, None), (403, None), (422, None), (503, "5"), (429, None),
                         (429, "soon"), (429, "nan"), (429, "inf")):
        clock = Clock()
        assert ask(answers((status, wait), (200, None)), clock) == (status, 1)
        assert clock.slept == []


def test_no_try_starts_after_the_limit() -> None:
    clock = Clock()
    many = answers(*[(429, "10")] * 100)
    status, sent = ask(many, clock)
    assert status == 429
    assert sent == int(report_client.GIVE_UP_AFTER_SECONDS / 10) + 1
    assert clock.now <= report_client.GIVE_UP_AFTER_SECONDS
