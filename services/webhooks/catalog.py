"""What platforms are told, and the rules of delivering it (pure decisions).

`WEBHOOK_EVENTS` is the one table of the lifecycle events a platform receives: a new
lifecycle event type is delivered by adding its entry here, nothing else. What their
bodies hold is `payloads`'.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from services.core import events

Type = events.TicketEventType

# The lifecycle event types a platform receives, each under its own name (`ticket.routed`
# ...): the names are the enum's, spelled once in `events`.
_DELIVERED = (
    Type.ROUTED,  # department, priority, deadlines
    Type.PICKED_UP,
    Type.RESPONDED,
    Type.WAITING_ON_CUSTOMER,  # the clocks pause
    Type.DEADLINES_CHANGED,  # paused, resumed, next response
    Type.TARGET_WARNING,  # a share of a target spent
    Type.ESCALATED,  # level 1 (breach) or 2, deadlines
    Type.TRANSFERRED,  # deadlines recomputed
    Type.PRIORITY_CHANGED,  # priority, deadlines recomputed
    Type.RESOLVED,
)
# Lifecycle event type -> the event name the platform receives.
WEBHOOK_EVENTS: dict[events.TicketEventType, str] = {kind: kind.value for kind in _DELIVERED}

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


def origin_of(url: str) -> str:
    """A URL's scheme, host and port: what logs and admin actions say of an endpoint (its
    path and query may hold a receiver's token, a user or password before the host a
    credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def change_of(*, url: str | None = None, enabled: bool | None = None) -> str:
    """An endpoint's change as an admin action records it: the URL's origin (`origin_of`),
    and whether it is enabled."""
    said = []
    if url is not None:
        said.append(f"url {origin_of(url)}/...")
    if enabled is not None:
        said.append("enabled" if enabled else "disabled")
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


@dataclass(frozen=True)
class Failed:
    """An attempt that failed: what went wrong (recorded with the callback), and the
    receiver's status when it answered."""

    error: str
    status: int | None = None

    @property
    def gone(self) -> bool:
        """The receiver wants no more callbacks: its endpoint is to be disabled."""
        return self.status == GONE


def answered(status: int) -> Failed | None:
    """What a receiver's answer makes of an attempt: None (taken) for a 2xx; any other
    status fails it (3xx too: a receiver that moved has its URL changed, not followed)."""
    return None if 200 <= status < 300 else Failed(f"HTTP {status}", status)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts, exponential backoff with jitter in the upper half of each step
    (a wait between half and all of it)."""

    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay_after(self, attempts: int, *,
                    jitter: Callable[[float, float], float] = random.uniform) -> float | None:
        """Seconds to wait before the next attempt, after `attempts` failed ones; None
        when they are used up (the delivery is dead-lettered). The wait is drawn in the
        upper half of the exponential step, so that receivers coming back are not hit by
        every sender at once, and no retry comes sooner than half the step."""
        if attempts >= self.max_attempts:
            return None
        step = min(self.max_seconds, self.base_seconds * 2 ** (attempts - 1))
        return jitter(step / 2, step)
