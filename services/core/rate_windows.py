"""The window a rate is counted over, as people write it (`second`, `5 minutes`): the
part of the `limits` grammar both rates take, of requests (settings.RATE) and of body
bytes (body_bytes.BYTE_RATE), written once so that the two cannot drift. Pure."""

from __future__ import annotations

# The windows, as `limits` names them; each is taken with a plural `s` too.
NAMES = ("second", "minute", "hour", "day", "month", "year")
# A window within a rate's pattern: how many of them (from 1, at most 9 digits, then at
# most one space), if more than one, then the window's name, in lower case. Two groups:
# the number with its space, and the name.
PATTERN = rf"([1-9][0-9]{{0,8}} ?)?({'|'.join(NAMES)})s?"
# What PATTERN takes, in words.
WORDS = (f"{', '.join(NAMES[:-1])} or {NAMES[-1]}, with a number of them before it if more"
         " than one")
