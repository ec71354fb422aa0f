"""bench/stage_work.py measures real work: each ticket it feeds a stage's transform comes
out as that stage's outputs (the ticket on the next topic and its lifecycle event), not
dropped or dead-lettered on the way."""

from __future__ import annotations

from datetime import datetime

from bench import stage_work
from bench.rules_eval import sample_customer
from services.core import envelope, topics
from services.core.settings import PROJECT_ROOT
from services.router import table_file
from services.router import worker as router_worker
from services.segmenter import rules_file
from services.segmenter import worker as segmenter_worker
from services.segmenter.profiles import Customer


async def test_the_segmenter_tags_every_ticket_it_is_given() -> None:
    async def lookup(customer_id: str, *, now: datetime) -> Customer:
        return sample_customer(int(customer_id.removeprefix("c-")))

    rule_set = rules_file.load(PROJECT_ROOT / "config" / "segments.yaml")
    segmenter = segmenter_worker.SegmentTicket(lookup=lookup, current_rules=lambda: rule_set)
    await segmenter.prefetch([])
    for n in range(5):
        outputs = await segmenter(envelope.from_record(*stage_work.received(n)))
        assert [output.topic for output in outputs] == [topics.SEGMENTED, topics.EVENTS]


async def test_the_router_routes_every_ticket_it_is_given() -> None:
    table = table_file.load(PROJECT_ROOT / "config" / "routing.yaml")
    router = router_worker.RouteTicket(lambda: table)
    await router.prefetch([])
    for n in range(8):
        outputs = await router(envelope.from_record(*stage_work.segmented(n)))
        lanes = [output.topic for output in outputs if topics.department_of(output.topic)]
        assert len(lanes) == 1 and topics.EVENTS in {output.topic for output in outputs}
