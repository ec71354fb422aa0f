"""The PNG report's drawing, from canned statistics (no sockets)."""

from pathlib import Path
from typing import Any

import pytest
from matplotlib import image
from matplotlib.figure import Figure
from matplotlib.text import Text

from services.metrics import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stats(name: str, key: str, p50: float | None, p90: float | None, met: int,
          missed: int) -> dict[str, Any]:
    decided = met + missed
    return {key: name, "window_seconds": 86400, "volume": decided + 1, "responded": decided,
            "resolved": 0, "backlog": 1,
            "first_response_seconds": {"count": decided, "p50": p50, "p90": p90, "p99": p90},
            "resolution_seconds": {"count": 0, "p50": None, "p90": None, "p99": None},
            "first_response_target": {"met": met, "missed": missed, "pending": 1,
                                      "without_target": 0,
                                      "ratio": met / decided if decided else None}}


def test_a_report_is_a_png_with_every_department_and_segment(tmp_path: Path) -> None:
    departments = [stats("public_sector", "department", 600, 3000, 19, 1),
                   stats("key_accounts", "department", 60, 200, 5, 5),
                   stats("sales_support", "department", None, None, 0, 0)]
    segments = [stats("government", "segment", 600, 3000, 19, 1),
                stats("potential", "segment", 1200, 7200, 2, 2)]
    out = report.render(departments, segments, window="24h", out=tmp_path / "r" / "report.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    height, width, _ = image.imread(out).shape
    assert (width, height) == (1300, 2 * 100 * (2.5 + 0.45 * 3))


def test_an_empty_window_still_gives_a_report(tmp_path: Path) -> None:
    out = report.render([], [], window="15m", out=tmp_path / "empty.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(("seconds", "unit"), [(30, "seconds"), (600, "minutes"),
                                                (86400, "hours")])
def test_times_are_shown_in_a_readable_unit(seconds: float, unit: str) -> None:
    assert report.time_unit(seconds)[0] == unit


class TestParitySection:
    def parity_answer(self) -> dict[str, Any]:
        from bench import parity_picture

        return parity_picture.answer()

    def test_the_report_grows_by_the_parity_section(self, tmp_path: Path) -> None:
        departments = [stats("public_sector", "department", 600, 3000, 19, 1)]
        segments = [stats("government", "segment", 600, 3000, 19, 1)]
        plain = report.render(departments, segments, window="7d", out=tmp_path / "plain.png")
        with_parity = report.render(departments, segments, window="7d",
                                    out=tmp_path / "parity.png", parity=self.parity_answer())
        plain_height = image.imread(plain).shape[0]
        assert with_parity.read_bytes().startswith(PNG_SIGNATURE)
        # Five age bands, the most groups of an attribute: 2 + 0.4 * 5 inches at 100 dpi.
        assert image.imread(with_parity).shape[0] == plain_height + 400

    def test_the_section_alone_and_without_attributes(self, tmp_path: Path) -> None:
        from services.metrics import parity_report

        alone = parity_report.render(self.parity_answer(), out=tmp_path / "alone.png")
        empty = parity_report.render({"threshold": 0.8, "minimum_group_size": 30,
                                      "attributes": []}, out=tmp_path / "empty.png")
        for out in (alone, empty):
            assert out.read_bytes().startswith(PNG_SIGNATURE)

    def test_suppressed_and_flagged_groups_are_labelled(self) -> None:
        from services.metrics import parity_report

        assert parity_report._label({"suppressed": True}, 30) == "fewer than 30 tickets"
        assert parity_report._label({"suppressed": False, "tickets": 90, "below_threshold": True,
                                     "ratios": {"first_response": 0.5,
                                                "target_attainment": None}}, 30) == (
            "50% on first response, 90 tickets  FLAGGED")

    def test_every_heading_fits_in_the_picture(self, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """The section's heading (threshold, colours, groups hidden) is read whole, in the
        report and alone: it ran off both sides of the picture, cut at its ends."""
        from services.metrics import parity_report

        drawn: list[Figure] = []

        class Recorded(Figure):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                drawn.append(self)

        monkeypatch.setattr(report, "Figure", Recorded)
        monkeypatch.setattr(parity_report, "Figure", Recorded)
        departments = [stats("public_sector", "department", 600, 3000, 19, 1)]
        segments = [stats("government", "segment", 600, 3000, 19, 1)]
        report.render(departments, segments, window="7d", out=tmp_path / "report.png",
                      parity=self.parity_answer())
        parity_report.render(self.parity_answer(), out=tmp_path / "alone.png")
        assert len(drawn) == 2
        for figure in drawn:
            headings = [text for text in figure.findobj(Text)
                        if text.get_text().startswith(("Service parity", "Response times"))]
            assert "Service parity" in headings[-1].get_text()
            for text in headings:
                extent = text.get_window_extent()
                assert extent.x0 >= 0 and extent.x1 <= figure.bbox.width, text.get_text()
