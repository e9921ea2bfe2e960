"""Logging set up once per process: one line per event on stdout.

``LOG_FORMAT=json`` (the default, for log shippers) writes one JSON object per
line; ``LOG_FORMAT=text`` writes a readable line for local runs. Both carry the
service name and, when set, the job id and request id of the work being done,
which code sets with ``log_context(job_id=...)`` rather than passing around.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from common.config import LoggingConfig

_CONTEXT_FIELDS = ("job_id", "request_id")
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach ``job_id``/``request_id`` to every log line written inside the block."""
    unknown = set(fields) - set(_CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """Return the log context fields in force, for handing to another thread."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Stamp each record with the service name and the job/request ids in force."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        context = _context.get()
        for field in _CONTEXT_FIELDS:
            if not hasattr(record, field):
                setattr(record, field, context.get(field))
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON with time, level, service, logger and context ids."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": getattr(record, "service", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Format a record as a readable line with its context ids."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(service)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as text, with job/request ids appended when set."""
        line = super().format(record)
        ids = " ".join(
            f"{field}={getattr(record, field)}"
            for field in _CONTEXT_FIELDS
            if getattr(record, field, None) is not None
        )
        return f"{line} [{ids}]" if ids else line


def configure_logging(service: str, config: LoggingConfig) -> None:
    """Send this process's logs to stdout in the configured format; safe to call twice."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    handler.addFilter(ContextFilter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_video2mp3", False):
            root.removeHandler(existing)
    handler._video2mp3 = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(config.level)
    # pika narrates every frame at DEBUG/INFO; our own lines say what matters.
    logging.getLogger("pika").setLevel(max(root.level, logging.WARNING))
