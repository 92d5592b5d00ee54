"""Small helpers shared by the runbook steps: timestamps, the schema check, JSON-ready values."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg

from starforge_backfill import schema
from starforge_backfill.errors import SchemaMissing, UsageError


def parse_ts(value: str | dt.datetime | None, name: str) -> dt.datetime | None:
    """An aware UTC datetime from ISO-8601 text (``Z`` accepted; naive means UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        ts = value
    else:
        try:
            ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"{name}: not an ISO-8601 timestamp: {value!r}") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


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
