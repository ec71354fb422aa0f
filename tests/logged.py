"""What the services logged, as a test's `caplog` holds it."""

from __future__ import annotations

import logging

import pytest

from services.core import library_lines


def ours(caplog: pytest.LogCaptureFixture, *, at: int = logging.ERROR
         ) -> list[logging.LogRecord]:
    """The records of the services' own loggers (`services.*`) at `at` or above: by
    default, what an operator reads as an error of ours (ERROR, CRITICAL)."""
    return [record for record in caplog.records
            if record.levelno >= at and library_lines.is_ours(record.name)]
