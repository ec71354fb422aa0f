"""bench/stage_work.py measures real work: each ticket it feeds a stage's transform comes
out as that stage's outputs (the ticket on the next topic, segmented by a rule or routed
to a department's lane, and its lifecycle event), not dropped, degraded or dead-lettered
on the way."""

from __future__ import annotations

import orjson

from bench import stage_work
from services.core import envelope, topics


async def _written(stage: str, tickets: int) -> list[list[envelope.Record]]:
    build, record = stage_work.STAGES[stage]
    kept: list[list[envelope.Record]] = []
    await stage_work.through(build(), [record(n) for n in range(tickets)], kept.append)
    assert len(kept) == tickets
    return kept


async def test_the_segmenter_segments_every_ticket_by_its_known_customer() -> None:
    for written in await _written("segmenter", 6):
        assert [output.topic for output in written] == [topics.SEGMENTED, topics.EVENTS]
        segmentation = orjson.loads(written[0].value)["segmentation"]
        assert segmentation["customer_known"] is True
        assert not segmentation.get("degraded")


async def test_the_router_routes_every_ticket_to_a_lane() -> None:
    for written in await _written("router", 8):
        lanes = [output.topic for output in written if topics.department_of(output.topic)]
        assert len(lanes) == 1
        assert topics.EVENTS in {output.topic for output in written}
