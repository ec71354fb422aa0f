"""demo_pipeline (tests/conftest.py) takes the routing table one way: a caller that gives
both `table` and ROUTING_TABLE_FILE in `extra_env` is refused before anything starts,
rather than one of them silently winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import demo_pipeline


def test_a_table_and_a_table_file_both_given_are_refused(tmp_path: Path) -> None:
    given_twice = demo_pipeline("127.0.0.1:1", tmp_path, table="routes: []\n",
                                extra_env={"ROUTING_TABLE_FILE": str(tmp_path / "other.yaml")})
    with pytest.raises(ValueError, match="not both"), given_twice:
        pass
    assert list(tmp_path.iterdir()) == []  # refused before seeding a store or starting
