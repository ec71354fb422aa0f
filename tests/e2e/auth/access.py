"""Who may call what (ACCESS), and calling an endpoint with a role's credential."""

from __future__ import annotations

import httpx

from tests.conftest import Pipeline

PUBLIC = "public"
PLATFORM, DEPARTMENT, ADMIN = "platform", "department", "admin"
STAFF = {DEPARTMENT, ADMIN}
ROLES = (PLATFORM, DEPARTMENT, ADMIN)
OWN, OTHER = "public_sector", "business_desk"  # the department tokens' departments

# (service, method, path) -> the roles admitted ("department": its own department only)
ACCESS: dict[tuple[str, str, str], set[str]] = {
    ("router", "POST", "/v1/tickets"): {PLATFORM},
    ("router", "GET", "/v1/tickets/{ticket_id}"): STAFF,
    ("router", "GET", "/v1/tickets/{ticket_id}/lane-copy"): STAFF,
    ("router", "POST", "/v1/tickets/{ticket_id}/events"): STAFF,
    ("router", "POST", "/v1/tickets/{ticket_id}/transfer"): STAFF,
    ("router", "POST", "/v1/tickets/{ticket_id}/priority"): STAFF,
    # The platform that posted the ticket (the routed ticket is the tests' platform's).
    ("router", "POST", "/v1/tickets/{ticket_id}/customer-replies"): {PLATFORM},
    ("router", "GET", "/v1/routing-table"): {ADMIN},
    ("router", "PUT", "/v1/routing-table"): {ADMIN},
    # The history of the routing table and the segment rules (configuration versions).
    **{(service, method, f"{prefix}{path}"): {ADMIN}
       for service, prefix in (("router", "/v1/routing-table"),
                               ("segmenter", "/v1/segment-rules"))
       for method, path in (("GET", "/versions"), ("GET", "/versions/{version_id}"),
                            ("GET", "/diff"), ("POST", "/versions/{version_id}/rollback"),
                            ("POST", "/dry-run"))},
    ("router", "POST", "/v1/simulations"): {ADMIN},
    ("router", "GET", "/v1/dead-letters"): {ADMIN},
    ("router", "POST", "/v1/dead-letters/replay"): {ADMIN},
    ("router", "POST", "/v1/credentials"): {ADMIN},
    ("router", "GET", "/v1/credentials"): {ADMIN},
    ("router", "DELETE", "/v1/credentials/{credential_id}"): {ADMIN},
    ("router", "PATCH", "/v1/credentials/{credential_id}"): {ADMIN},
    ("router", "GET", "/v1/admin-actions"): {ADMIN},
    ("router", "GET", "/v1/credentials/me"): set(ROLES),
    # Callbacks to the platforms: their endpoints and dead letters, for admins.
    **{("router", method, f"/v1/webhooks{path}"): {ADMIN} for method, path in (
        ("POST", "/endpoints"), ("GET", "/endpoints"), ("GET", "/endpoints/{platform}"),
        ("PATCH", "/endpoints/{platform}"), ("DELETE", "/endpoints/{platform}"),
        ("POST", "/endpoints/{platform}/secret"), ("GET", "/dead-letters"),
        ("POST", "/dead-letters/replay"), ("POST", "/dead-letters/{delivery_id}/replay"))},
    ("segmenter", "GET", "/v1/customers/{customer_id}/segment"): {ADMIN},
    ("segmenter", "PUT", "/v1/customers/{customer_id}"): {ADMIN},
    ("segmenter", "GET", "/v1/customers/{customer_id}"): {ADMIN},
    ("segmenter", "DELETE", "/v1/customers/{customer_id}"): {ADMIN},
    ("segmenter", "POST", "/v1/customers/{customer_id}/purchases"): {ADMIN},
    ("segmenter", "GET", "/v1/tiers"): {ADMIN},
    ("segmenter", "POST", "/v1/tiers/recompute"): {ADMIN},
    ("segmenter", "POST", "/v1/customers/import"): {ADMIN},
    ("segmenter", "POST", "/v1/purchases/import"): {ADMIN},
    ("segmenter", "GET", "/v1/segment-rules"): {ADMIN},
    ("segmenter", "PUT", "/v1/segment-rules"): {ADMIN},
    ("segmenter", "POST", "/v1/segment-rules/analysis"): {ADMIN},
    ("metrics", "GET", "/v1/departments/{department}/stats"): STAFF,
    ("metrics", "GET", "/v1/departments"): {ADMIN},
    ("metrics", "GET", "/v1/segments/stats"): {ADMIN},
    ("metrics", "GET", "/v1/parity/stats"): {ADMIN},
    # Health and the Prometheus scrape stay open (an internal network's business).
    **{(service, "GET", path): {PUBLIC} for service in ("router", "segmenter", "metrics")
       for path in ("/healthz", "/readyz", "/metrics")},
}


def role_headers(pipeline: Pipeline, role: str, department: str = OWN) -> dict[str, str]:
    return pipeline.headers(role, department if role == DEPARTMENT else "tests")


def concrete(path: str, ticket_id: str) -> str:
    return path.format(ticket_id=ticket_id, customer_id="auth-probe-nobody",
                       department=OWN, credential_id="000000000000", version_id=1,
                       platform="auth-probe-nobody", delivery_id="msg_auth-probe")


async def call(pipeline: Pipeline, service: str, method: str, path: str, ticket_id: str,
               headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=pipeline.url(service), timeout=30) as client:
        # No body: admitted calls then fail validation (422) rather than change anything.
        return await client.request(method, concrete(path, ticket_id), headers=headers,
                                    params=QUERIES.get((service, method, path)))


# The query an endpoint takes besides its path, about OWN's ticket.
QUERIES = {("router", "GET", "/v1/tickets/{ticket_id}/lane-copy"): {
    "department": OWN, "routed_at": "2026-01-01T00:00:00+00:00"}}


ENTRIES = sorted(ACCESS)
GUARDED = [entry for entry in ENTRIES if PUBLIC not in ACCESS[entry]]
# About the caller's own credential, not about a department's tickets or stats.
ABOUT_THE_CALLER = {("router", "GET", "/v1/credentials/me")}


def entry_id(entry: tuple[str, str, str]) -> str:
    return " ".join(entry)
