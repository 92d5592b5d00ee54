"""Logging on stderr: human lines by default, one JSON object per line with `--log-format json`.

Every module logs through `logging.getLogger("starforge_backfill.<module>")`; `setup_logging` installs one
handler on the package logger. Context travels in `extra=` keys (job_id, snapshot_id, worker,
duration_ms, ...): the JSON formatter emits the known ones, the human formatter only the message.
Whatever the format, each line is scrubbed before it is written: registered secrets (the DSN's password)
become `***` and anything shaped like a DSN password is hidden (`redact.scrub_text`). A raw payload is never logged.

Per-batch and per-snapshot lines use `detail_level()`: INFO with `-v`, DEBUG otherwise, so that a long run
stays quiet by default. Standard library only: this module is imported before any heavy dependency.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from collections.abc import Iterable
from typing import Any, TextIO

from starforge_backfill import redact

PACKAGE_LOGGER = "starforge_backfill"
FORMATS = ("human", "json")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# `extra=` keys the JSON formatter writes, in this order, when a record carries them.
CONTEXT_FIELDS = (
    "event",
    "command",
    "job_id",
    "snapshot_id",
    "worker",
    "duration_ms",
    "snapshots",
    "applied",
    "failed",
    "errors_by_type",
    "error_type",
    "rows_written",
    "outcome",
    "reason",
    "state",
    "sleep_s",
    "done",
    "total",
    "rate_per_s",
    "eta_s",
    "exit_code",
    "hint",
)


class _Scrubbing(logging.Formatter):
    """Base formatter: the subclass renders a line, this class scrubs secrets out of it."""

    def render(self, record: logging.LogRecord) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        return redact.scrub_text(self.render(record))

    @staticmethod
    def _exception(record: logging.LogRecord) -> str | None:
        if record.exc_info and record.exc_info[0] is not None:
            return "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return None


class HumanFormatter(_Scrubbing):
    """`message` for INFO, `level: message` otherwise (`error: ...`), then `hint: ...` when the record has one."""

    def render(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"
        hint = getattr(record, "hint", None)
        if hint:
            line += f"\nhint: {hint}"
        exc = self._exception(record)
        if exc:
            line += "\n" + exc
        return line


class JsonFormatter(_Scrubbing):
    """One JSON object per line: timestamp (UTC, ISO-8601), level, logger, message, then known context keys."""

    def render(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        doc: dict[str, Any] = {
            "timestamp": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        exc = self._exception(record)
        if exc:
            doc["exception"] = exc
        return json.dumps(doc, default=str, ensure_ascii=False, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (click's test runner swaps it)."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        return None


def setup_logging(
    format: str = "human",
    level: str | int = "info",
    *,
    verbose: bool = False,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Install (or replace) the package's stderr handler; returns it. Idempotent."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}; expected one of {', '.join(FORMATS)}")
    numeric = LEVELS[level.lower()] if isinstance(level, str) else int(level)
    logger = logging.getLogger(PACKAGE_LOGGER)
    old = current_handler()
    handler = _StderrHandler(verbose)
    handler.name = PACKAGE_LOGGER
    handler.setLevel(numeric)
    formatter: _Scrubbing = JsonFormatter() if format == "json" else HumanFormatter()
    for secret in secrets:
        redact.add_secret(secret)
    handler.setFormatter(formatter)
    if old is not None:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(numeric)  # no record below the handler's level is even made
    return handler


def current_handler() -> logging.Handler | None:
    """The handler `setup_logging` installed, if any."""
    for handler in logging.getLogger(PACKAGE_LOGGER).handlers:
        if handler.name == PACKAGE_LOGGER:
            return handler
    return None


def current_format() -> str | None:
    """'human' or 'json' once logging is set up, else None."""
    handler = current_handler()
    if handler is None:
        return None
    return "json" if isinstance(handler.formatter, JsonFormatter) else "human"


def detail_level() -> int:
    """The level of per-batch and per-snapshot lines: INFO with `-v`, DEBUG otherwise."""
    handler = current_handler()
    return logging.INFO if getattr(handler, "verbose", False) else logging.DEBUG
