"""Gate records: what preflight, dry-run and canary found, per config fingerprint, kept in PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from starforge_backfill import templates
from starforge_backfill.errors import GateFailed


def record_gate(
    conn: psycopg.Connection[Any],
    kind: str,
    fingerprint: str,
    passed: bool,
    *,
    job_id: str | None = None,
    from_ts: dt.datetime | None = None,
    to_ts: dt.datetime | None = None,
    artifact: Path | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a gating step's result (kind: preflight, dry-run, canary)."""
    templates.execute(
        conn,
        "gates/record.sql",
        {
            "kind": kind,
            "config_fingerprint": fingerprint,
            "passed": passed,
            "job_id": job_id,
            "from_ts": from_ts,
            "to_ts": to_ts,
            "artifact": str(artifact) if artifact else None,
            "details": Jsonb(details or {}),
        },
    )


def latest_gate(conn: psycopg.Connection[Any], kind: str, fingerprint: str) -> dict[str, Any] | None:
    """The newest recorded result of `kind` for this config fingerprint, or None."""
    return templates.fetch_one(conn, "gates/latest.sql", {"kind": kind, "config_fingerprint": fingerprint})


def require_for_run(conn: psycopg.Connection[Any], cfg: Any, what: str = "run") -> None:
    """Refuse a production write (`what`: run, reprocess) unless a passing preflight and canary exist for this
    config fingerprint."""
    fp = cfg.fingerprint()
    missing = []
    needed = [("preflight", cfg.gates.require_preflight), ("canary", cfg.gates.require_canary)]
    for kind, required in needed:
        if not required:
            continue
        row = latest_gate(conn, kind, fp)
        if row is None:
            missing.append(f"no {kind} recorded for this config (fingerprint {fp[:12]})")
        elif not row["passed"]:
            missing.append(f"the latest {kind} for this config failed ({row['created_at']:%Y-%m-%d %H:%M} UTC)")
    if missing:
        raise GateFailed(
            f"{what} refused: " + "; ".join(missing),
            hint="run `starforge-backfill preflight` and `starforge-backfill canary` first, "
            "or pass --force --reason TEXT (recorded in the audit trail)",
        )
