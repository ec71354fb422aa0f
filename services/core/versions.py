"""Versions of the files people edit: declared in the file, or derived from its content."""

from __future__ import annotations

import hashlib


def content_version(declared: object, text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{declared}+{digest}" if declared not in (None, "") else digest
