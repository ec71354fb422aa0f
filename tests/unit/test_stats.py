from datetime import UTC, datetime, timedelta

import pytest

from services.core import durations
from services.metrics import stats
from services.metrics.timeline import Assignment, Timeline

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class TestWindow:
    @pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600),
                                                   ("7d", 604800)])
    def test_accepted_windows(self, text: str, seconds: int) -> None:
        assert durations.parse_window(text).total_seconds() == seconds

    @pytest.mark.parametrize("text", ["", "1w", "0h", "-1h", "h", "1.5h", "9999d"])
    def test_rejected_windows_say_what_is_accepted(self, text: str) -> None:
        with pytest.raises(ValueError, match="window must"):
            durations.parse_window(text)


class TestPercentiles:
    def test_nearest_rank(self) -> None:
        result = stats.percentiles(float(v) for v in range(1, 101))
        assert (result.count, result.p50, result.p90, result.p99) == (100, 50.0, 90.0, 99.0)

    def test_empty(self) -> None:
        assert stats.percentiles([]) == stats.Percentiles(0, None, None, None)


def test_service_stats_counts_and_durations() -> None:
    answered = Timeline("a", "d", "s", received_at=T0, routed_at=T0,
                        first_response_at=T0 + timedelta(seconds=30))
    waiting = Timeline("b", "d", "s", received_at=T0, routed_at=T0)
    result = stats.service_stats(timedelta(hours=1), [answered, waiting], backlog=2)
    assert (result.volume, result.responded, result.resolved, result.backlog) == (2, 1, 0, 2)
    assert result.first_response_seconds.p50 == 30.0


def attainment(timelines: list[Timeline], *, now: datetime) -> stats.TargetAttainment:
    return stats.service_stats(timedelta(hours=1), timelines, 0, now=now).first_response_target


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def with_target(ticket_id: str, department: str, *, deadline: datetime,
                responded: datetime | None = None, outcome: str | None = None) -> Timeline:
    return Timeline(ticket_id, department, "s", received_at=T0, routed_at=T0,
                    first_response_at=responded, first_response_deadline=deadline,
                    target_outcome=outcome)


class TestTargetAttainment:
    def test_met_missed_pending_and_without_target(self) -> None:
        timelines = [
            with_target("met", "d", deadline=minutes(15), responded=minutes(5)),
            with_target("late", "d", deadline=minutes(15), responded=minutes(20)),
            with_target("passed", "d", deadline=minutes(15)),
            with_target("open", "d", deadline=minutes(90)),
            Timeline("none", "d", "s", received_at=T0, routed_at=T0),
        ]
        result = attainment(timelines, now=minutes(60))
        assert result == stats.TargetAttainment(met=1, missed=2, pending=1, without_target=1,
                                                ratio=1 / 3)

    def test_a_recorded_outcome_stands(self) -> None:
        decided = with_target("a", "d", deadline=minutes(15), responded=minutes(5),
                              outcome="missed")
        assert attainment([decided], now=minutes(60)).missed == 1

    def test_no_decided_target_has_no_ratio(self) -> None:
        assert attainment([], now=T0).ratio is None


class TestDepartmentAttribution:
    def transferred(self) -> Timeline:
        return Timeline(
            "t", "b", "s", received_at=T0, routed_at=T0, first_response_at=minutes(5),
            resolved_at=minutes(50), first_response_deadline=minutes(15),
            assignments=(Assignment("routed", "a", T0, "route", counted=True),
                         Assignment("transferred", "b", minutes(30), "transfer", "a",
                                    counted=True)))

    def test_each_department_is_credited_with_what_it_did(self) -> None:
        ticket = self.transferred()
        first = stats.service_stats(timedelta(hours=1), [ticket], 0, now=minutes(60),
                                    department="a")
        second = stats.service_stats(timedelta(hours=1), [ticket], 0, now=minutes(60),
                                     department="b")
        assert (first.volume, first.responded, first.resolved) == (1, 1, 0)
        assert first.first_response_target.met == 1
        assert (second.volume, second.responded, second.resolved) == (1, 0, 1)
        assert second.resolution_seconds.p50 == 3000.0
        assert second.first_response_target.met == 0

    def test_a_department_that_never_held_it_sees_nothing(self) -> None:
        result = stats.service_stats(timedelta(hours=1), [self.transferred()], 0,
                                     department="c")
        assert result.volume == 0
