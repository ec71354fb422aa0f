"""Tables the whole fleet shares: leases (a periodic job runs on one instance at a time)
and the versions of the configuration people edit (segment rules, routing table)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.core import db, versions
from services.core.db import Base


class LeaseRow(Base):
    """Who holds a fleet-wide job (escalation, tier recompute, purge) until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(db.UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime())


class ConfigVersionRow(Base):
    """One version of a configuration file, kept for good: who, when, why, and whether
    it is the one in force."""

    __tablename__ = "config_versions"

    version_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # segment_rules, routing_table
    # As the file names it, with its hash.
    version: Mapped[str] = mapped_column(String(versions.MAX_VERSION))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    # The credential (id and label), or the file.
    author: Mapped[str] = mapped_column(String(versions.MAX_AUTHOR))
    comment: Mapped[str] = mapped_column(String(versions.MAX_COMMENT), default="")
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime())
    in_force: Mapped[bool] = mapped_column(Boolean, default=False)
