"""A store conflict (a deadlock) met while a record is transformed has its batch retried:
the record is not dead-lettered as if it were at fault; kept failing past the bound (the
records taken one by one, giving up), it is, with the conflict as its reason."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from services.core import batches, envelope, kafka, topics
from tests.unit.test_outage import as_sqlalchemy_raises
from tests.unit.test_selective_transforms import dead_letters, event_record


class Deadlocks:
    """A transform whose store write deadlocks with another transaction."""

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        raise as_sqlalchemy_raises(asyncpg.exceptions.DeadlockDetectedError(
            "deadlock detected"))


async def test_the_batch_is_retried_not_the_record_dead_lettered() -> None:
    records = [event_record("ticket.responded", offset) for offset in range(3)]
    # Raised to the stage loop, which rewinds and retries the batch (faults.TRANSIENT).
    with pytest.raises(DBAPIError):
        await batches.Batches(Deadlocks(), stage="test").outgoing(records)


async def test_past_the_bound_each_record_is_dead_lettered_with_the_conflict() -> None:
    records = [event_record("ticket.responded", offset) for offset in range(3)]
    sent = await batches.Batches(Deadlocks(), stage="test").outgoing(records, one_by_one=True)
    letters = dead_letters(sent)
    assert [letter.topic for letter in letters] == [topics.DEAD_LETTERS] * 3
    reasons = {dict(letter.headers)[topics.DLQ_ERROR] for letter in letters}
    assert len(reasons) == 1 and b"conflicts with others" in reasons.pop()
