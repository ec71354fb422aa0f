"""Versions of the files people edit: declared in the file, or derived from its content."""

from __future__ import annotations

import hashlib

# The longest version a ticket carries (its segmentation's rules version); a declared
# label leaves room for "+" and the digest.
MAX_VERSION = 200
_DIGEST = 12
MAX_LABEL = MAX_VERSION - _DIGEST - 1
# What a version kept in the store says besides its text: who put it in force (the
# credential, or the file) and why.
MAX_AUTHOR = 200
MAX_COMMENT = 500


def content_version(declared: object, text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:_DIGEST]
    return f"{declared}+{digest}" if declared not in (None, "") else digest
