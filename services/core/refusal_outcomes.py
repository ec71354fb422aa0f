"""The outcomes of the requests refused at the HTTP edge for who sent them (refusals):
each the `error` of its answers and the `outcome` label of routing_http_auth_refused_total.
Names alone, importing nothing, so that decision code (the router's verdicts, which decide
`escalated_away`) names them as the edge answers them, without the edge's FastAPI and
Prometheus; refusals gives them to the rest."""

UNAUTHENTICATED = "unauthenticated"  # 401: no token, or one naming no live credential
FORBIDDEN = "forbidden"  # 403: the credential's role or department does not allow it
# 403: a department's ticket escalated out of it, by its own request or before it (the
# router's verdicts.escalated_away, escalated_away_before).
ESCALATED_AWAY = "escalated_away"
RATE_LIMITED = "rate_limited"  # 429: over the credential's rate of requests
# A body's bytes over its credential's budget (RateLimits.spend_bytes): its own outcome,
# told from a flood of requests, since what to do about each differs.
BYTE_RATE_LIMITED = "byte_rate_limited"
REPORT_IN_PROGRESS = "report_in_progress"  # 429: the credential's earlier report runs
OUTCOMES = (UNAUTHENTICATED, FORBIDDEN, ESCALATED_AWAY, RATE_LIMITED, BYTE_RATE_LIMITED,
            REPORT_IN_PROGRESS)
