"""The `department priority` command: the request it makes of the router, and what it
prints (the router itself is tested in tests/integration/test_priority_change.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.departments import cli, queue


class Sent:
    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        self.status, self.answer = status, answer
        self.requests: list[tuple[str, Any, dict[str, str]]] = []

    def __call__(self, url: str, *, json: Any, headers: dict[str, str],
                 timeout: float) -> httpx.Response:
        self.requests.append((url, json, headers))
        return httpx.Response(self.status, json=self.answer,
                              request=httpx.Request("POST", url))


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Sent:
    monkeypatch.setenv("ROUTER_URL", "http://router.test")
    monkeypatch.setenv("API_TOKEN", "rt_department")
    return Sent(200, {"ticket_id": "t-1", "priority": 1, "deadlines": {}})


class TestPriorityCommand:
    def test_posts_the_priority_and_reason_and_prints_the_receipt(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        result = CliRunner().invoke(cli.app, ["priority", "t-1", "--to", "1",
                                              "--reason", "outage"])
        assert result.exit_code == 0, result.output
        assert router.requests == [(
            "http://router.test/v1/tickets/t-1/priority", {"priority": 1, "reason": "outage"},
            {"Authorization": "Bearer rt_department"})]
        assert json.loads(result.output) == router.answer

    def test_a_refusal_is_shown_and_exits_1(self, router: Sent,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        refusal = Sent(409, {"error": "same_priority", "detail": "the ticket has priority 1"})
        monkeypatch.setattr(queue.httpx, "post", refusal)
        result = CliRunner().invoke(cli.app, ["priority", "t-1", "--to", "1",
                                              "--reason", "outage"])
        assert result.exit_code == 1
        assert "not recorded: 409" in result.output and "same_priority" in result.output
