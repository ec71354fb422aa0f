"""Draw docs/parity.png, the README's picture of service parity, from a generated
history where the truth is known: customers aged 65 and over are answered three times
slower, non-binary customers are escalated far more often, everyone else alike.

    .venv/bin/python -m bench.parity_picture [--out docs/parity.png]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core import groups
from services.metrics import parity, parity_report
from services.metrics.timeline import Assignment, Timeline

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
TARGET = timedelta(hours=4)


def history(tickets: int = 3000, seed: int = 3) -> tuple[list[Timeline],
                                                          dict[str, dict[str, str]]]:
    rng = random.Random(seed)
    timelines, bands = [], {}
    for n in range(tickets):
        ticket_id = f"t{n}"
        age = rng.randint(18, 90)
        gender = rng.choices(("female", "male", "non_binary", None), (45, 45, 6, 4))[0]
        band = rng.choices(groups.SOCIO_ECONOMIC_BANDS, (20, 25, 30, 20, 5))[0]
        bands[ticket_id] = groups.bands(age, gender, band)
        received = NOW - timedelta(hours=rng.uniform(5, 160))
        hours = rng.expovariate(1 / (3.0 if age >= 65 else 1.0))
        escalated = rng.random() < (0.4 if gender == "non_binary" else 0.05)
        assignments = [Assignment("routed", "care", received, "route")]
        if escalated:
            assignments.append(Assignment("escalated", "desk", received + TARGET,
                                          "escalation", from_department="care"))
        timelines.append(Timeline(
            ticket_id=ticket_id, department=assignments[-1].department, segment="general",
            received_at=received, routed_at=received,
            first_response_at=received + timedelta(hours=hours),
            first_response_deadline=received + TARGET, assignments=tuple(assignments)))
    return timelines, bands


def answer(policy: parity.Policy | None = None) -> dict[str, object]:
    """What GET /v1/parity/stats answers for the generated history."""
    policy = policy or parity.Policy(minimum_group_size=30)
    timelines, bands = history()
    parities = parity.parity_by_attribute(timelines, bands, attributes=groups.ATTRIBUTES,
                                          now=NOW, policy=policy)
    return {"window_seconds": 7 * 86400, "threshold": policy.threshold,
            "minimum_group_size": policy.minimum_group_size,
            "attributes": [asdict(p) for p in parities]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/parity.png"))
    out = parity_report.render(answer(), out=parser.parse_args().out)
    print(f"{out} written")


if __name__ == "__main__":
    main()
