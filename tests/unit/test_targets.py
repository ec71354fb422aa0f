"""One rule for when a target is met or missed (services/core/targets.py), in Python and
in the stores' queries alike: the deadline itself is in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.core import targets

DEADLINE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MOMENTS = {"before": DEADLINE - timedelta(microseconds=1), "at": DEADLINE,
           "after": DEADLINE + timedelta(microseconds=1)}


def test_answered_at_the_deadline_is_in_time_and_after_it_late() -> None:
    assert {name: targets.answered_in_time(at, DEADLINE) for name, at in MOMENTS.items()} \
        == {"before": True, "at": True, "after": False}


def test_unanswered_it_is_past_due_only_after_the_deadline() -> None:
    assert {name: targets.past_due(DEADLINE, now) for name, now in MOMENTS.items()} \
        == {"before": False, "at": False, "after": True}


@pytest.mark.parametrize("now", list(MOMENTS.values()), ids=list(MOMENTS))
def test_a_query_selects_by_the_same_rule(now: datetime) -> None:
    """On a table (SQLite in memory, the stores' dialect for tests), rows whose deadline
    is each moment around `now`: the condition selects those `past_due` says are."""
    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("name", sa.String),
                     sa.Column("deadline", sa.DateTime(timezone=True)))
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"name": name, "deadline": at}
                                            for name, at in MOMENTS.items()])
        selected = set(connection.scalars(sa.select(table.c.name).where(
            targets.past_due_where(table.c.deadline, now))))
    assert selected == {name for name, at in MOMENTS.items() if targets.past_due(at, now)}
