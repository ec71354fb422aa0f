"""What a credential's admin actions say of it (credentials.py): its own limits when
issued with them, and what a change changed: each limit before and after, never what a
label says (free text an admin writes: it may hold a name)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.core import access
from services.core.credentials import Credential, Credentials, change_said, limits_said

KEY = Credential(credential_id="0123456789ab", role=access.Role.PLATFORM, subject="desk",
                 label="Jane Doe's desk", rate_limit="100/second", byte_rate_limit=None,
                 created_at=datetime(2026, 12, 1, tzinfo=UTC), revoked_at=None)


@pytest.mark.parametrize(("changes", "said"), [
    ({"rate_limit": "500/second"}, "rate_limit 100/second -> 500/second"),
    ({"rate_limit": None}, "rate_limit 100/second -> default"),
    ({"byte_rate_limit": "16MiB/second"}, "byte_rate_limit default -> 16MiB/second"),
    ({"label": "John Roe's desk", "rate_limit": "5/minute", "byte_rate_limit": "1MiB/day"},
     "label changed, rate_limit 100/second -> 5/minute, byte_rate_limit default -> 1MiB/day"),
    # What is sent as it is changes nothing.
    ({"rate_limit": "100/second", "byte_rate_limit": None, "label": "Jane Doe's desk"}, ""),
    ({}, ""),
])
def test_a_change_says_each_limit_before_and_after(changes: dict[str, str | None],
                                                   said: str) -> None:
    assert change_said(KEY, changes) == said


@pytest.mark.parametrize(("limits", "said"), [
    ({"rate_limit": None, "byte_rate_limit": None}, ""),
    ({"rate_limit": "200/second", "byte_rate_limit": None}, "rate_limit 200/second"),
    ({"rate_limit": "200/second", "byte_rate_limit": "16MiB/second"},
     "rate_limit 200/second, byte_rate_limit 16MiB/second"),
])
def test_a_keys_own_limits_are_said_when_issued(limits: dict[str, str | None],
                                                said: str) -> None:
    assert limits_said(limits) == said


@pytest.mark.parametrize(("changes", "said"), [
    ({"subject": "Jane Doe", "label": "Jane Doe's desk", "role": "admin"},
     "not changeable so: role, subject"),
    ({"label": None, "rate_limit": "5/second"}, "not changeable so: label"),
])
def test_a_change_not_allowed_names_the_fields_never_their_text(
        changes: dict[str, str | None], said: str) -> None:
    # Refused before any session is opened: the store is never reached.
    keys = Credentials(async_sessionmaker())
    with pytest.raises(ValueError) as refused:
        asyncio.run(keys.change("0123456789ab", changes))
    assert str(refused.value) == said
