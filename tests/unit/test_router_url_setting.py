"""ROUTER_URL, where the command-line clients (the department tool, `routing simulate`)
find the router: this machine's ROUTER_PORT unless given."""

from __future__ import annotations

import pytest

from services.core.settings import Settings


def test_unset_it_follows_the_routers_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_URL", raising=False)
    monkeypatch.setenv("ROUTER_PORT", "9000")
    assert Settings().router_url == "http://127.0.0.1:9000"
    monkeypatch.delenv("ROUTER_PORT")
    assert Settings().router_url == "http://127.0.0.1:8080"


def test_given_it_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_PORT", "9000")
    monkeypatch.setenv("ROUTER_URL", "https://router.example.com")
    assert Settings().router_url == "https://router.example.com"
