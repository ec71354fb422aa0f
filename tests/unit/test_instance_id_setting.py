"""INSTANCE_ID: a fixed id, or "auto" for the host name (one per container or pod)."""

from __future__ import annotations

import socket

import pydantic
import pytest

from services.core.settings import Settings


class TestInstanceId:
    def test_unset_is_zero(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("INSTANCE_ID", raising=False)
        assert Settings().instance_id == "0"

    def test_a_fixed_id_is_kept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("INSTANCE_ID", "router-2")
        assert Settings().instance_id == "router-2"

    def test_auto_takes_the_host_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(socket, "gethostname", lambda: "3f2a9c1b7d4e")
        monkeypatch.setenv("INSTANCE_ID", "auto")
        assert Settings().instance_id == "3f2a9c1b7d4e"

    def test_auto_gives_each_host_its_own_id(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("INSTANCE_ID", "auto")
        ids = set()
        for pod in ("router-7d9f8c6b5-x2k4q", "router-7d9f8c6b5-m9z7t"):
            monkeypatch.setattr(socket, "gethostname", lambda pod=pod: pod)
            ids.add(Settings().instance_id)
        assert len(ids) == 2

    def test_a_host_name_outside_the_pattern_is_refused(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(socket, "gethostname", lambda: "x" * 65)
        with pytest.raises(pydantic.ValidationError, match="instance_id"):
            Settings(instance_id="auto")
