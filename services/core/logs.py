"""Logging set-up: one JSON object a line, fields passed as `extra`.

Log ids, departments, segments and reasons; never names, contact details, birth dates
or gender (the ticket's text can hold any of these, so it is never logged either).
"""

from __future__ import annotations

import logging

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from services.core.settings import Settings


def configure(settings: Settings, *, service: str) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        # orjson: the intake logs each accepted ticket, and the standard library's json
        # took two thirds of that line's formatting (about 10 us a request of ~35).
        handler.setFormatter(OrjsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        ))
    else:
        handler.setFormatter(TextWithFields(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Clients' own request lines, off below WARNING: httpx logs each request's URL at INFO
    # (a platform's callback URL may carry its token in the query), httpcore its headers
    # at DEBUG.
    for client in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(client).setLevel(max(root.level, logging.WARNING))


# What a log record holds of its own; the rest is what the call passed as `extra`.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class TextWithFields(logging.Formatter):
    """One line of text a record, then the fields its call passed as `extra`, as
    key=value (JSON values), which the JSON format gives as fields of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{key}={orjson.dumps(value, default=str).decode()}"
                          for key, value in vars(record).items() if key not in _RECORD_FIELDS)
        return f"{line} {fields}" if fields else line
