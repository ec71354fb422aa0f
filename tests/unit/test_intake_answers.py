"""The intake's 202 to a new ticket, written by hand (intake.ticket_accepted): the bytes
and headers FastAPI wrote for the route's response model, `TicketAccepted`, returned."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from services.router import intake

PRINTABLE = "".join(chr(code) for code in range(0x21, 0x7f))  # what X-Correlation-ID takes


@pytest.mark.parametrize("correlation_id", [
    "0190c3a2-7b1e-7a3c-8f00-1234567890ab", PRINTABLE, '"\\/<>&\'', "x" * 128])
async def test_the_answer_is_what_fastapi_wrote_for_the_model(correlation_id: str) -> None:
    ticket_id = "0190c3a2-7b1e-7a3c-8f00-1234567890ab"
    app = FastAPI()

    @app.post("/model", status_code=202, response_model=intake.TicketAccepted)
    async def model() -> intake.TicketAccepted:
        return intake.TicketAccepted(ticket_id=ticket_id, correlation_id=correlation_id)

    @app.post("/written", status_code=202, response_model=intake.TicketAccepted)
    async def written() -> object:
        return intake.ticket_accepted(ticket_id, correlation_id)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://intake") as client:
        before, after = await client.post("/model"), await client.post("/written")
    assert after.status_code == before.status_code == 202
    assert after.content == before.content
    assert after.headers.raw == before.headers.raw
