"""`routing segments analyse` flags a rule that stands in for a protected attribute, over
a real customer store (SQLite): the demo base plus a club whose members are all over 70."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from devtools import demo
from services import cli
from services.core import db
from services.core.settings import PROJECT_ROOT
from services.segmenter.models import CustomerRow

CANDIDATE = (PROJECT_ROOT / "config" / "segments.yaml").read_text(encoding="utf-8") + """
  - name: seniors-club
    segment: club
    when: "'club' in customer.attributes && customer.attributes.club == 'senior'"
  - name: chess-club
    segment: club
    when: "'club' in customer.attributes && customer.attributes.club == 'chess'"
"""


async def customer_base(database_url: str) -> None:
    """The demo base; 40 seniors in one club, 40 customers aged 37 to 76 in another."""
    await demo.seed_if_empty(database_url, count=300)
    engine = db.engine(database_url)
    try:
        async with db.sessions(engine)() as session:
            for n in range(80):
                senior = n < 40
                session.add(CustomerRow(
                    customer_id=f"club-{n}", customer_type="individual",
                    birth_date=date(1946 + n % 10 if senior else 1950 + n % 40, 2, 1),
                    gender=("female", "male")[n % 2],
                    attributes={"club": "senior" if senior else "chess"}))
            await session.commit()
    finally:
        await engine.dispose()


def test_the_cli_reports_the_proxy_and_not_a_club_of_mixed_ages(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    asyncio.run(customer_base(database_url))
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE, encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["segments", "analyse", "--candidate",
                                          str(candidate)],
                                env={"DATABASE_URL": database_url,
                                     "PROXY_ASSOCIATION_THRESHOLD": "0.3"})
    assert result.exit_code == 0, result.output
    detection = json.loads(result.stdout)["proxy_detection"]
    assert "chess-club" in detection["rules_checked"]
    found = {p["rule"]: (p["attribute"], p["band"]) for p in detection["proxies"]}
    assert found["seniors-club"] == ("age_band", "65_plus")
    assert "chess-club" not in found
    # (The 80 club members bought nothing: potential customers, half of them over 70, so
    # the demo's `prospects` rule, tier == 'potential', now leans old too.)
