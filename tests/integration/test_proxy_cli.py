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
from services.core import config_store, db
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


async def put_in_force(database_url: str, text: str) -> None:
    engine = db.engine(database_url)
    try:
        await config_store.ConfigVersions(db.sessions(engine), config_store.SEGMENT_RULES
                                          ).put_in_force(config_store.Candidate(
                                              text=text, version="uploaded-1",
                                              author="admin credential 0123456789ab"))
    finally:
        await engine.dispose()


def test_the_rules_in_force_are_the_stores_version_not_the_file(tmp_path: Path) -> None:
    """An admin's upload (or rollback) is in force, as the services serve it: the command
    analysed the file, the seed, and compared a candidate with it."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    asyncio.run(customer_base(database_url))
    uploaded = CANDIDATE.replace("version: demo-2", "version: uploaded-1")
    assert uploaded != CANDIDATE
    asyncio.run(put_in_force(database_url, uploaded))
    env = {"DATABASE_URL": database_url}

    in_force = CliRunner().invoke(cli.app, ["segments", "analyse"], env=env)
    assert in_force.exit_code == 0, in_force.output
    report = json.loads(in_force.stdout)
    assert report["rules_version"].startswith("uploaded-1+")
    assert {"seniors-club", "chess-club"} <= {rule["name"] for rule in report["rules"]}

    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(uploaded, encoding="utf-8")
    compared = CliRunner().invoke(cli.app, ["segments", "analyse", "--candidate",
                                            str(candidate)], env=env)
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.stdout)["live_version"].startswith("uploaded-1+")
