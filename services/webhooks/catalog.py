"""What platforms are told, and the rules of delivering it (pure decisions).

`WEBHOOK_EVENTS` is the one table of the lifecycle events a platform receives: a new
lifecycle event type is delivered by adding its entry here, nothing else. What their
bodies hold is `payloads`'.
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from services.core import events

Type = events.TicketEventType

# The lifecycle event types a platform receives, each under its own name (`ticket.routed`
# ...): the names are the enum's, spelled once in `events`. Each with what it tells the
# platform, as the OpenAPI document's webhooks say it.
TOLD: dict[events.TicketEventType, str] = {
    Type.ROUTED: "The ticket was routed: its department, segment, priority, the reason and"
                 " its deadlines",
    Type.PICKED_UP: "The department picked the ticket up",
    Type.RESPONDED: "The department responded",
    Type.WAITING_ON_CUSTOMER: "The department asked the customer something: the ticket's"
                              " clocks pause",
    Type.DEADLINES_CHANGED: "The ticket's deadlines changed: its clocks paused, resumed, or"
                            " a next response started",
    Type.TARGET_WARNING: "A share of a service-level target was spent (the target)",
    Type.ESCALATED: "A service-level target of the ticket was escalated: its target, its level"
                    " (1 on a breach, or 2), from_department, the department, its deadlines",
    Type.TRANSFERRED: "The ticket was transferred: from_department, the new department, its"
                      " deadlines recomputed",
    Type.PRIORITY_CHANGED: "The ticket's priority changed: the new priority, its deadlines"
                           " recomputed",
    Type.RESOLVED: "The ticket was resolved",
}
# What more a receiver needs to know of a type's callbacks, added to its description.
MORE: dict[events.TicketEventType, str] = {
    # One escalation event per clock (service_clocks.escalation): so told, with the
    # fields that tell the callbacks of one hand-over apart.
    Type.ESCALATED: "One callback per target escalated, named by data.target and"
                    " data.level: targets escalated together, in one hand-over, are a"
                    " callback each (each its own webhook-id), with the same"
                    " data.occurred_at, data.from_department and data.department. A"
                    " ticket routed before the service-level clocks existed is escalated"
                    " once, on its first response, without target or level.",
}
# Lifecycle event type -> the event name the platform receives.
WEBHOOK_EVENTS: dict[events.TicketEventType, str] = {kind: kind.value for kind in TOLD}

LOOPBACK_HOSTS = {"localhost"}
MAX_URL_LENGTH = 2048
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# A host name's labels: letters, digits, `_` and inner hyphens (what a resolver looks up;
# `%`, `(` or `*` in a host are a URL's, never a name's), 1-63 characters.
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# A host name's last label starts with no digit: a host of digits and dots is an IPv4
# address, which the resolver reads even when it is not one ("10.1" is 10.0.0.1).
_LAST_LABEL = r"[A-Za-z_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# What an endpoint URL may be, as the API schema says it too: https:// and a host name
# (labels of 1-63 characters) or IPv4 address, or http:// on loopback; an optional port
# (1-65535), path, query.
URL_PATTERN = (rf"^(https://({_IPV4}|({_LABEL}\.)*{_LAST_LABEL})"
               rf"|http://(localhost|127(\.{_OCTET}){{3}}|\[::1\]))"
               rf"(:{_PORT})?([/?#][!-~]*)?$")


def delivery_id(event_id: str) -> str:
    """The `webhook-id` of an event's callback: the same on every attempt and replay, so
    that receivers can drop what they already had."""
    return f"msg_{event_id}"


def endpoint_problem(url: str) -> str | None:
    """What is wrong with a webhook URL, or None: HTTPS, except on loopback."""
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "an absolute https:// URL, e.g. https://desk.example.com/hooks/routing"
    if parts.username or parts.password:
        return "no user or password in the URL: the signature authenticates the sender"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return ("https:// is required; http:// is accepted only on loopback (127.0.0.1,"
                " ::1, localhost)")
    sending = sending_problem(url)
    if sending:
        return sending
    if not re.fullmatch(URL_PATTERN, url):
        return ("https:// (or http:// on loopback) in lower case, then a host name or IPv4"
                " address in ASCII, an optional port, then a path or query of printable ASCII")
    return None


# Platforms a refused registration names at most (a fleet may serve hundreds).
PLATFORMS_NAMED = 20


def platform_problem(platform: str, issued: Collection[str]) -> str | None:
    """Why no endpoint can be registered for `platform`, given the platforms a credential
    was ever `issued` to (revoked ones too: their tickets still move on), or None: one
    never issued a credential posts no tickets, so its endpoint would never be called
    (a typo, most likely). The answer names the first PLATFORMS_NAMED of those issued
    one, and how many more."""
    if platform in issued:
        return None
    names = sorted(issued)
    named = ", ".join(names[:PLATFORMS_NAMED]) or "none yet"
    if len(names) > PLATFORMS_NAMED:
        named += (f", and {len(names) - PLATFORMS_NAMED:,} more"
                  " (GET /v1/credentials?role=platform lists them)")
    return (f"no platform credential was ever issued for {platform!r}, so it posts no"
            " tickets and its endpoint would never be called: issue its credential first"
            f" (role platform, this subject); platforms with one: {named}")


def origin_of(url: str) -> str:
    """A URL's scheme, host and port: what logs and admin actions say of an endpoint (its
    path and query may hold a receiver's token, a user or password before the host a
    credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def change_of(*, url: str | None = None, enabled: bool | None = None,
              hold_lifted: bool = False) -> str:
    """An endpoint's change as an admin action records it: the URL's origin (`origin_of`),
    whether it is enabled, and its hold lifted."""
    said = []
    if url is not None:
        said.append(f"url {origin_of(url)}/...")
    if enabled is not None:
        said.append("enabled" if enabled else "disabled")
    if hold_lifted:
        said.append("hold lifted")
    return ", ".join(said)


def sending_problem(url: str) -> str | None:
    """What in a URL the sender (httpx, then the resolver) cannot use, or None. Its own
    parser decides: a URL it cannot parse would fail every attempt (the punycode of an
    `xn--` host, which no pattern can check, among them)."""
    try:
        parsed = httpx.URL(url)
        host = parsed.host
        host.encode("idna")  # as the resolver does: labels of 1-63 characters
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return ("a URL the sender can parse: a host name of labels of 1-63 characters"
                " (an xn-- label in valid punycode) or an IPv4 address")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return "a port from 1 to 65535"
    if re.fullmatch(r"[0-9.]+", host) and not _is_ipv4(host):
        return "a host of digits and dots must be an IPv4 address (four numbers, 0-255)"
    return None


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A receiver answering 410 Gone wants no more callbacks (the Standard Webhooks spec: the
# sender disables the endpoint): its endpoint is disabled, as an admin disables it.
GONE = 410
# Answers whose Retry-After the next attempt waits for: too many requests (RFC 6585) and
# unavailable (RFC 9110).
WITH_RETRY_AFTER = frozenset({429, 503})
# A receiver asking the sender to slow down: its whole endpoint is held (`hold_after`).
TOO_MANY_REQUESTS = 429


def hold_in_force(until: datetime | None, *, now: datetime) -> datetime | None:
    """Until when an endpoint held `until` is still held at `now`; None when it is not
    (a hold ends by itself at its time)."""
    return until if until is not None and until > now else None


@dataclass(frozen=True)
class Failed:
    """An attempt that failed: what went wrong (recorded with the callback), the
    receiver's status when it answered, and how long it asked to be left alone (seconds,
    from a 429's or 503's Retry-After)."""

    error: str
    status: int | None = None
    retry_after: float | None = None

    @property
    def gone(self) -> bool:
        """The receiver wants no more callbacks: its endpoint is to be disabled."""
        return self.status == GONE


def answered(status: int, *, retry_after: str | None = None, now: datetime) -> Failed | None:
    """What a receiver's answer makes of an attempt: None (taken) for a 2xx; any other
    status fails it (3xx too: a receiver that moved has its URL changed, not followed),
    with the wait its Retry-After asks on a 429 or 503."""
    if 200 <= status < 300:
        return None
    asked = asked_to_wait(retry_after, now=now) if status in WITH_RETRY_AFTER else None
    return Failed(f"HTTP {status}", status, asked)


def asked_to_wait(retry_after: str | None, *, now: datetime) -> float | None:
    """The seconds a Retry-After asks: its delay in seconds, or the time to its HTTP date
    from `now` (0 once past); None when there is none or it is neither (the backoff
    alone, then)."""
    if retry_after is None:
        return None
    said = retry_after.strip()
    if re.fullmatch(r"[0-9]+", said):
        return float(said)  # a number too large for a float is inf: capped by the policy
    try:
        when = email.utils.parsedate_to_datetime(said)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP date is UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts, exponential backoff with jitter in the upper half of each step
    (a wait between half and all of it)."""

    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay_after(self, attempts: int, *, asked: float | None = None,
                    jitter: Callable[[float, float], float] = random.uniform) -> float | None:
        """Seconds to wait before the next attempt, after `attempts` failed ones; None
        when they are used up (the delivery is dead-lettered). The wait is drawn in the
        upper half of the exponential step, so that receivers coming back are not hit by
        every sender at once, and no retry comes sooner than half the step. A wait the
        receiver `asked` for (its Retry-After) is waited if longer, up to `max_seconds`:
        a receiver cannot hold a callback past the longest step."""
        if attempts >= self.max_attempts:
            return None
        step = min(self.max_seconds, self.base_seconds * 2 ** (attempts - 1))
        backoff = jitter(step / 2, step)
        return backoff if asked is None else max(backoff, min(asked, self.max_seconds))

    def hold_after(self, failed: Failed) -> float | None:
        """Seconds the receiver's whole endpoint is held after this answer (nothing sent
        to it, from any worker), or None when it is not: a 429 asks the sender to slow
        down, for what its Retry-After asks or else the backoff's first step; a 503 holds
        it only with a Retry-After (without one, it is that callback's failure alone, as
        any 5xx). Capped at `max_seconds`, as a callback's wait is; a wait of nothing (a
        Retry-After of 0 or past) holds nothing."""
        if failed.status == TOO_MANY_REQUESTS:
            asked = self.base_seconds if failed.retry_after is None else failed.retry_after
        elif failed.status in WITH_RETRY_AFTER and failed.retry_after is not None:
            asked = failed.retry_after
        else:
            return None
        held = min(asked, self.max_seconds)
        return held if held > 0 else None
