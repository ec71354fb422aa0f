from datetime import UTC, datetime, timedelta

import pytest

from services.metrics import stats
from services.metrics.timeline import Timeline

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class TestWindow:
    @pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600),
                                                   ("7d", 604800)])
    def test_accepted_windows(self, text: str, seconds: int) -> None:
        assert stats.parse_window(text).total_seconds() == seconds

    @pytest.mark.parametrize("text", ["", "1w", "0h", "-1h", "h", "1.5h", "9999d"])
    def test_rejected_windows_say_what_is_accepted(self, text: str) -> None:
        with pytest.raises(ValueError, match="window must"):
            stats.parse_window(text)


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
