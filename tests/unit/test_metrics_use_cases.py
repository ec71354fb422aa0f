"""The metrics service's use cases (services/metrics/service.py), run with recording
fakes wired by the service's own bootstrap: no broker, no database, no sockets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.core.events import TicketEvent, TicketEventType
from services.core.settings import Settings
from services.metrics import departments, service, timeline
from services.metrics.timeline import Assignment, Duration, Routed, Timeline
from tests.unit.metrics_fakes import wired

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def event(kind: TicketEventType, ticket_id: str = "t-1", *, at: datetime = NOW,
          **fields: Any) -> TicketEvent:
    return TicketEvent(ticket_id=ticket_id, type=kind, occurred_at=at, **fields)


def routed_event(ticket_id: str = "t-1", *, department: str = "care",
                 segment: str = "general", at: datetime = NOW) -> TicketEvent:
    return event(TicketEventType.ROUTED, ticket_id, at=at, received_at=at,
                 department=department, segment=segment, reason="route")


def routed(ticket_id: str, department: str, segment: str, *, at: datetime = NOW - HOUR,
           answered_after: timedelta | None = None, deadline: timedelta | None = None,
           resolved: bool = False) -> Timeline:
    answered = None if answered_after is None else at + answered_after
    return Timeline(ticket_id=ticket_id, department=department, segment=segment,
                    received_at=at, routed_at=at, first_response_at=answered,
                    resolved_at=answered if resolved else None,
                    first_response_deadline=None if deadline is None else at + deadline,
                    assignments=(Assignment("routed", department, at, "route"),))


class TestBootstrap:
    def test_the_parity_measurement_follows_the_settings(self) -> None:
        metrics, _, _ = wired(settings=Settings(parity_window="2d", parity_threshold=0.7))
        assert metrics.parity.window == timedelta(days=2)
        assert metrics.parity.policy.threshold == 0.7


class TestRecordEvents:
    async def test_events_change_their_timelines_in_one_transaction(self) -> None:
        metrics, store, _ = wired()
        await service.record_events(metrics.updates, metrics.exporter, [
            routed_event("t-1"), routed_event("t-2"),
            event(TicketEventType.RESPONDED, "t-1", at=NOW + timedelta(minutes=2))])
        assert store.transactions == [["t-1", "t-2", "t-1"]]
        assert store.saved["t-1"].first_response_at == NOW + timedelta(minutes=2)
        assert store.saved["t-2"].department == "care"

    async def test_what_the_events_show_is_exported(self) -> None:
        metrics, _, exporter = wired()
        seen = await service.record_events(metrics.updates, metrics.exporter, [
            routed_event(), event(TicketEventType.RESPONDED, at=NOW + timedelta(minutes=2))])
        assert Routed("care", "general", "route") in exporter.observations()
        assert Duration("first_response", "care", "general", 120.0) in exporter.observations()
        assert exporter.observations() == seen

    async def test_a_replayed_event_exports_nothing_twice(self) -> None:
        metrics, _, exporter = wired()
        await service.record_events(metrics.updates, metrics.exporter, [routed_event()])
        once = exporter.observations()
        await service.record_events(metrics.updates, metrics.exporter, [routed_event()])
        assert Routed("care", "general", "route") in once
        assert exporter.observations() == once


class TestCheckDeadlines:
    async def test_a_deadline_passed_unanswered_is_missed_and_exported(self) -> None:
        metrics, store, exporter = wired(routed("t-late", "care", "general", deadline=HOUR / 2))
        missed = await service.check_deadlines(metrics.timelines, metrics.updates,
                                               metrics.exporter, now=NOW)
        assert missed == 1
        assert store.saved["t-late"].target_outcome == "missed"
        assert timeline.TargetDecided("care", "general", "missed") in exporter.observations()

    async def test_the_deadlines_passed_are_decided_in_one_transaction(self) -> None:
        metrics, store, exporter = wired(
            *(routed(f"t-{n}", "care", "general", deadline=HOUR / 2) for n in range(3)),
            routed("t-later", "care", "general", deadline=2 * HOUR))
        missed = await service.check_deadlines(metrics.timelines, metrics.updates,
                                               metrics.exporter, now=NOW)
        assert missed == 3
        assert store.transactions == [["t-0", "t-1", "t-2"]]
        assert exporter.observations().count(
            timeline.TargetDecided("care", "general", "missed")) == 3

    async def test_no_deadline_passed_opens_no_transaction(self) -> None:
        metrics, store, _ = wired(routed("t-1", "care", "general"))
        assert await service.check_deadlines(metrics.timelines, metrics.updates,
                                             metrics.exporter, now=NOW) == 0
        assert store.transactions == []

    async def test_a_deadline_within_the_reporting_grace_is_not_decided(self) -> None:
        deadline = HOUR - service.REPORTING_GRACE / 2
        metrics, store, exporter = wired(routed("t-1", "care", "general", deadline=deadline))
        assert await service.check_deadlines(metrics.timelines, metrics.updates,
                                             metrics.exporter, now=NOW) == 0
        assert store.saved["t-1"].target_outcome is None
        assert exporter.observations() == []


class TestBacklog:
    async def test_known_departments_without_open_tickets_are_exported_too(self) -> None:
        metrics, _, exporter = wired(routed("t-1", "care", "general"),
                                     routed("t-2", "care", "general", answered_after=HOUR,
                                            resolved=True),
                                     routed("t-3", "care", "general", answered_after=HOUR))
        open_now = await service.measure_backlog(metrics.timelines, metrics.exporter,
                                                 departments={"billing"})
        assert open_now == {"care": 2}  # t-3 answered, not resolved: open, not in backlog
        assert exporter.exported == [("open_tickets", ({"care": 2}, {"care": 1},
                                                       {"billing"}))]


class TestStats:
    async def test_a_department_is_measured_over_the_window_with_its_backlog(self) -> None:
        metrics, _, _ = wired(
            routed("t-1", "care", "general", answered_after=timedelta(minutes=5)),
            routed("t-2", "care", "general"),
            routed("t-old", "care", "general", at=NOW - 3 * HOUR),
            routed("t-3", "billing", "general"))
        found = await service.department_stats(metrics.timelines, "care", 2 * HOUR, now=NOW)
        assert (found.volume, found.responded, found.backlog) == (2, 1, 2)
        assert found.first_response_seconds.p50 == 300.0

    async def test_every_department_that_held_or_holds_tickets_is_listed(self) -> None:
        metrics, _, _ = wired(routed("t-1", "care", "general"),
                              routed("t-2", "billing", "vip", at=NOW - 3 * HOUR))
        found = await service.all_departments(metrics.timelines, HOUR * 2, now=NOW)
        assert list(found) == ["billing", "care"]
        assert (found["billing"].volume, found["billing"].backlog) == (0, 1)
        assert found["care"].volume == 1

    async def test_segments_are_side_by_side(self) -> None:
        metrics, _, _ = wired(routed("t-1", "care", "general"),
                              routed("t-2", "care", "vip", answered_after=HOUR / 4),
                              routed("t-3", "vip_desk", "vip"))
        found = await service.segment_stats(metrics.timelines, 2 * HOUR, now=NOW)
        assert list(found) == ["general", "vip"]
        assert (found["vip"].volume, found["vip"].responded, found["vip"].backlog) == (2, 1, 1)


class TestKnownDepartments:
    """The stats API answers for a department of the routing table in force or one that
    held a ticket kept in the store; any other name is unknown (departments.py)."""

    async def test_a_department_of_the_table_without_tickets_is_known(self) -> None:
        metrics, store, _ = wired(in_table={"care", "billing"})
        assert await service.unknown_department(metrics.timelines, await metrics.in_table(),
                                                "billing") is None
        assert store.asked_held == []  # the table settled it: the store was not asked

    async def test_a_department_out_of_the_table_keeps_its_history(self) -> None:
        metrics, _, _ = wired(routed("t-old", "retired_desk", "general", at=NOW - 90 * HOUR),
                              in_table={"care"})
        assert await service.unknown_department(metrics.timelines, await metrics.in_table(),
                                                "retired_desk") is None

    async def test_a_department_that_handed_its_tickets_on_keeps_its_history(self) -> None:
        handed = replace(routed("t-1", "retired_desk", "general"), department="care",
                         transferred_at=NOW - HOUR / 2, assignments=(
                             Assignment("routed", "retired_desk", NOW - HOUR, "route"),
                             Assignment("transferred", "care", NOW - HOUR / 2, "transfer",
                                        from_department="retired_desk")))
        metrics, _, _ = wired(handed, in_table={"care"})
        assert await service.unknown_department(metrics.timelines, await metrics.in_table(),
                                                "retired_desk") is None

    async def test_any_other_name_is_unknown_and_the_table_is_listed(self) -> None:
        metrics, store, _ = wired(routed("t-1", "public_sector", "government"),
                                  in_table={"public_sector", "care"})
        unknown = await service.unknown_department(metrics.timelines, await metrics.in_table(),
                                                   "publc_sector")
        assert unknown == departments.UnknownDepartment("publc_sector",
                                                        ("care", "public_sector"))
        assert store.asked_held == ["publc_sector"]
        assert unknown.detail == (
            "no department 'publc_sector' in the routing table in force; its departments:"
            " care, public_sector; no ticket it held is kept (those that held tickets in a"
            " window: GET /v1/departments)")

    async def test_a_table_that_cannot_be_read_refuses_no_department(self) -> None:
        metrics, _, _ = wired(in_table=None)
        assert await service.unknown_department(metrics.timelines, await metrics.in_table(),
                                                "publc_sector") is None


class TestParity:
    async def test_the_bands_of_the_routed_tickets_are_compared(self) -> None:
        metrics, _, _ = wired(routed("t-1", "care", "general"),
                              routed("t-old", "care", "general", at=NOW - 30 * 24 * HOUR),
                              bands={"t-1": {"gender": "female"}})
        parities = await service.parity_stats(metrics.timelines, metrics.bands,
                                              metrics.parity, now=NOW)
        assert metrics.bands.asked == [{"t-1"}]  # type: ignore[attr-defined]
        assert [p.attribute for p in parities] == list(Settings().parity_attributes)
        gender = next(p for p in parities if p.attribute == "gender")
        assert {g.group for g in gender.groups} >= {"female"}

    async def test_the_periodic_measurement_exports_the_threshold(self) -> None:
        metrics, _, exporter = wired(routed("t-1", "care", "general"),
                                     settings=Settings(parity_threshold=0.75))
        await service.export_parity(metrics.timelines, metrics.bands, metrics.exporter,
                                    metrics.parity, now=NOW)
        [(kind, (parities, threshold))] = exporter.exported
        assert (kind, threshold) == ("parity", 0.75)
        assert len(parities) == len(Settings().parity_attributes)
