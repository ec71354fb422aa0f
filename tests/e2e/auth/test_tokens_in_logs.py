"""No token, valid or revoked, reaches the services' logs."""

from __future__ import annotations

from tests.conftest import Pipeline
from tests.e2e.auth.access import call


async def test_tokens_never_reach_the_logs(secured: Pipeline, routed_ticket: str,
                                           revoked_token: str) -> None:
    await call(secured, "router", "GET", "/v1/tickets/{ticket_id}", routed_ticket,
               {"Authorization": f"Bearer {revoked_token}"})
    logs = secured.logs()
    assert "ticket accepted" in logs  # the logs are there to be searched
    for token in [revoked_token, *secured.issued_tokens]:
        assert token.split("_", 2)[2] not in logs
