"""What a failed callback attempt records of its error (the delivery's last error, shown to
admins, and the dead-lettered log line): never the endpoint's URL, whose path, query or
user and password may hold the receiver's token, however the error quotes it."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import httpx
import pytest

from services.webhooks import delivery, models

URL = "https://bot:hunter2@desk.example.com/hooks/t0ken?token=s3cret"
SECRETS = ("hunter2", "bot:", "t0ken", "s3cret", "token=")


async def attempt(fails: Exception) -> str:
    def transport(request: httpx.Request) -> httpx.Response:
        raise fails

    row = models.WebhookDeliveryRow(delivery_id="msg_1", body='{"type": "ticket.routed"}')
    async with httpx.AsyncClient(transport=httpx.MockTransport(transport)) as client:
        failed = await delivery.send_callback(client, URL, [], row,
                                              sent_at=datetime(2026, 1, 1, tzinfo=UTC),
                                              timeout_seconds=5)
    assert failed is not None
    return failed.error


class TestALastError:
    @pytest.mark.parametrize("fails", [
        httpx.ConnectError(f"cannot reach {URL}"),
        httpx.RemoteProtocolError(f"the server at {httpx.URL(URL)} hung up"),
        httpx.UnsupportedProtocol(f"Request URL {URL!r} has an unsupported protocol"),
        ValueError(f"cannot encode a header for {URL}")])
    async def test_never_quotes_the_url(self, fails: Exception) -> None:
        error = await attempt(fails)
        assert error == type(fails).__name__
        assert not [secret for secret in SECRETS if secret in error]

    async def test_says_the_operating_systems_reason(self) -> None:
        failed = httpx.ConnectError(f"cannot reach {URL}")
        failed.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        assert await attempt(failed) == "ConnectError: Name or service not known"
