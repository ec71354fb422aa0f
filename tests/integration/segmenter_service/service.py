"""The running segmenter service, and a customer's segment asked of it with the
explanation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from devtools import processes


class Segmenter:
    def __init__(self, process: processes.ServiceProcess, rules_file: Path,
                 database_url: str) -> None:
        self.process = process
        self.rules_file = rules_file
        self.database_url = database_url
        self.url = process.url


async def segment_of(client: httpx.AsyncClient, customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}/segment",
                                params={"explain": "true"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
