"""Helpers the runbook steps share: the range, the step artifact folder, client memory sampling, percentiles."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill import schema
from starforge_backfill.errors import SchemaMissing, UsageError

MB = 1024 * 1024


def parse_ts(value: str | dt.datetime, name: str) -> dt.datetime:
    """An ISO-8601 timestamp (a trailing Z allowed); naive values are taken as UTC."""
    if isinstance(value, dt.datetime):
        ts = value
    else:
        try:
            ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"{name}: not an ISO-8601 timestamp: {value!r}") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def parse_range(from_ts: str | dt.datetime | None, to_ts: str | dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """The half-open created_at range [from, to); both ends required and in order."""
    if from_ts is None or to_ts is None:
        raise UsageError("give --from and --to (a created_at range, half-open)")
    f, t = parse_ts(from_ts, "--from"), parse_ts(to_ts, "--to")
    if f >= t:
        raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t.isoformat()})")
    return f, t


def runbook_dir(cfg: Any) -> Path:
    """`<artifacts_dir>/runbook/<fingerprint[:12]>/`: where the steps before a job write (created if needed)."""
    path = Path(cfg.artifacts_dir) / "runbook" / cfg.fingerprint()[:12]
    path.mkdir(parents=True, exist_ok=True)
    return path


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class RssSampler:
    """Samples this process's resident set size in a background thread; `peak` and `growth` in bytes.

    A thread rather than before/after readings: the ETL's peak (a parsed payload) is gone by the time it
    returns.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_rss = self.peak = self._proc.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss
        if rss > self.peak:
            self.peak = rss

    @property
    def growth(self) -> int:
        """Peak minus the RSS when sampling started (bytes, >= 0)."""
        return max(0, self.peak - self.start_rss)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


def mb(value: float | None) -> float | None:
    """Bytes as MiB, rounded to 0.1."""
    return None if value is None else round(value / MB, 1)


def elapsed(t0: float) -> float:
    """Seconds since `t0` (a perf_counter reading), rounded to the microsecond."""
    return round(time.perf_counter() - t0, 6)


def parse_optional_ts(value: str | dt.datetime | None, name: str) -> dt.datetime | None:
    """parse_ts, with None passed through."""
    return None if value is None else parse_ts(value, name)


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaMissing (exit 3) when the database lacks the tables or columns the toolkit needs."""
    missing = schema.missing_columns(conn)
    if missing:
        first = ", ".join(f"{t}({', '.join(c[:3])})" for t, c in list(missing.items())[:3])
        raise SchemaMissing(f"the database lacks the expected schema: missing {first}")


def jsonable(value: Any) -> Any:
    """Datetimes, UUIDs and Decimals made JSON-ready, recursively."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
