"""Looking again for a topic made a moment ago (`new_topics.looked_again`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core import new_topics


class TestLookedAgain:
    async def test_looks_until_what_is_expected_shows(self) -> None:
        looks = iter([set(), set(), {"dept.a"}, {"dept.a", "dept.b"}])
        taken: list[set[str]] = []

        async def look() -> set[str]:
            taken.append(next(looks))
            return taken[-1]

        assert await new_topics.looked_again(look, lambda seen: "dept.a" in seen) == {"dept.a"}
        assert len(taken) == 3

    async def test_a_topic_that_never_shows_is_looked_for_a_while_then_the_last_look_given(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(new_topics, "SHOWS_WITHIN_SECONDS", 0.3)
        monkeypatch.setattr(new_topics, "LOOK_AGAIN_SECONDS", 0.01)
        taken: list[int] = []

        async def look() -> int:
            taken.append(len(taken))
            return taken[-1]

        assert await new_topics.looked_again(look, lambda seen: False) == taken[-1]
        assert len(taken) > 1

    async def test_what_shows_at_the_first_look_is_looked_at_once(self) -> None:
        taken: list[str] = []

        async def look() -> str:
            taken.append("look")
            return "dept.a"

        assert await new_topics.looked_again(look, lambda seen: seen == "dept.a") == "dept.a"
        assert taken == ["look"]


def test_the_readme_says_how_long_a_topic_is_looked_for() -> None:
    """The replay of dead letters and the department queue, each in its own words."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert readme.count(f"for up to {new_topics.SHOWS_WITHIN_SECONDS:g} s (") == 1
    assert readme.count(f"for up to {new_topics.SHOWS_WITHIN_SECONDS:g} s:") == 1
