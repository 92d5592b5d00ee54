"""Timestamps and created_at ranges as operators and queue payloads write them (ISO-8601, UTC when naive)."""

from __future__ import annotations

import datetime as dt

from starforge_backfill.errors import UsageError

EXAMPLE = "2024-01-01T00:00:00Z"


def parse_ts(value: str | dt.datetime, name: str) -> dt.datetime:
    """An ISO-8601 timestamp (a trailing Z allowed); naive values are taken as UTC."""
    if isinstance(value, dt.datetime):
        ts = value
    else:
        try:
            ts = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"{name}: not an ISO-8601 timestamp: {value!r} (expected ISO-8601, e.g. 2024-01-01 or"
                " 2024-01-01T00:00Z)",
                hint=f"for example {name} {EXAMPLE}",
            ) from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def parse_optional_ts(value: str | dt.datetime | None, name: str) -> dt.datetime | None:
    """parse_ts, with None passed through."""
    return None if value is None else parse_ts(value, name)


def parse_range(from_ts: str | dt.datetime | None, to_ts: str | dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """The half-open created_at range [from, to); both ends required and in order."""
    if from_ts is None or to_ts is None:
        raise UsageError("give --from and --to (a created_at range, half-open)")
    f, t = parse_ts(from_ts, "--from"), parse_ts(to_ts, "--to")
    if f >= t:
        raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t.isoformat()})")
    return f, t
