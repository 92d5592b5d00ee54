"""Gate records: what preflight, dry-run, canary and verify found, kept in PostgreSQL and bound to their scope.

A gate row names the database it ran against (the server's system identifier plus the database name), the
config fingerprint, the range or slice it covered and the concurrency it approved. `run` relies on a gate
only within that scope: a clone or a restore carries the rows into a database where they prove nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from starforge_backfill import templates
from starforge_backfill.errors import GateFailed


def database_identity(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The database `conn` is on: system_identifier (None where pg_control_system() is revoked for this
    role), name, address (host:port/db, never a password) and slug (a folder name for its artifacts)."""
    try:
        with conn.transaction():  # a savepoint inside a transaction: the fallback still runs after an error
            row = templates.fetch_one(conn, "gates/database.sql", {})
    except psycopg.errors.InsufficientPrivilege:
        row = templates.fetch_one(conn, "gates/database_name.sql", {})
    assert row is not None
    info = conn.info
    host = info.host if not str(info.host).startswith("/") else "local"
    sysid = row["system_identifier"]
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{row['name']}-{sysid or f'{host}_{info.port}'}")
    return {
        "system_identifier": sysid,
        "name": row["name"],
        "address": f"{host}:{info.port}/{info.dbname}",
        "slug": slug,
    }


def describe(db: dict[str, Any] | None) -> str:
    """`nc_walk (system 7714479196964755578)` for a gate's or a connection's database."""
    if not db or not db.get("name"):
        return "an unnamed database (recorded before gates named theirs)"
    return f"{db['name']} (system {db.get('system_identifier') or 'unknown'})"


def record_gate(
    conn: psycopg.Connection[Any],
    kind: str,
    fingerprint: str,
    passed: bool,
    *,
    job_id: str | None = None,
    from_ts: dt.datetime | None = None,
    to_ts: dt.datetime | None = None,
    concurrency: int | None = None,
    artifact: Path | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a gating step's result (kind: preflight, dry-run, canary, verify) on the database of `conn`,
    which is the database it ran against."""
    db = database_identity(conn)
    named = {k: db[k] for k in ("system_identifier", "name", "address")}
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
            "details": Jsonb({**(details or {}), "database": named}),
            "db_system_identifier": db["system_identifier"],
            "db_name": db["name"],
            "concurrency": concurrency,
        },
    )


def latest_gate(conn: psycopg.Connection[Any], kind: str, fingerprint: str) -> dict[str, Any] | None:
    """The newest recorded result of `kind` for this config fingerprint, or None."""
    return templates.fetch_one(conn, "gates/latest.sql", {"kind": kind, "config_fingerprint": fingerprint})


def _span(f: dt.datetime | None, t: dt.datetime | None) -> str:
    return f"[{f.isoformat() if f else '?'}, {t.isoformat() if t else '?'})"


def check_for_run(
    conn: psycopg.Connection[Any], cfg: Any, from_ts: dt.datetime, to_ts: dt.datetime, concurrency: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """What stands between this run and its gates: (one line per mismatch, the gate rows it relies on).

    The preflight and the canary (each when the config requires it) must be the newest of their kind for
    this fingerprint, passed, and recorded on this database; the run's range must lie inside the
    preflight's, and its concurrency must not exceed the one the preflight approved (its capacity check
    was for that many workers). A canary is a narrow slice at low concurrency by design: it binds the
    database, not the range or the concurrency."""
    fp = cfg.fingerprint()
    here = database_identity(conn)
    problems: list[str] = []
    relied: list[dict[str, Any]] = []
    needed = [("preflight", cfg.gates.require_preflight), ("canary", cfg.gates.require_canary)]
    for kind, required in needed:
        if not required:
            continue
        row = latest_gate(conn, kind, fp)
        if row is None:
            problems.append(f"no {kind} recorded for this config (fingerprint {fp[:12]})")
            continue
        relied.append(row)
        if not row["passed"]:
            problems.append(f"the latest {kind} for this config failed ({row['created_at']:%Y-%m-%d %H:%M} UTC)")
            continue
        gate_db = {"name": row.get("db_name"), "system_identifier": row.get("db_system_identifier")}
        if (gate_db["name"], gate_db["system_identifier"]) != (here["name"], here["system_identifier"]):
            problems.append(f"the {kind} was recorded on database {describe(gate_db)}, not on {describe(here)}")
            continue
        if kind != "preflight":
            continue
        gf, gt = row.get("from_ts"), row.get("to_ts")
        if gf is None or gt is None or from_ts < gf or to_ts > gt:
            problems.append(
                f"the run's range {_span(from_ts, to_ts)} is not inside the preflight's approved range {_span(gf, gt)}"
            )
        if (problem := _above_approved(row, concurrency)) is not None:
            problems.append(problem)
    return problems, relied


def _above_approved(preflight_row: dict[str, Any], concurrency: int) -> str | None:
    approved = preflight_row.get("concurrency")
    if approved is None or concurrency > int(approved):
        return f"concurrency {concurrency} exceeds the {approved or 'unrecorded'} the preflight approved"
    return None


def require_raise(conn: psycopg.Connection[Any], cfg: Any, concurrency: int) -> None:
    """Refuse raising a job's concurrency above what the newest preflight of this config approved (when
    the config requires a preflight): `run --concurrency N` on an existing job is the same decision."""
    if not cfg.gates.require_preflight:
        return
    row = latest_gate(conn, "preflight", cfg.fingerprint())
    problem = "no preflight recorded for this config" if row is None else _above_approved(row, concurrency)
    if problem is not None:
        raise GateFailed(
            f"run refused: {problem}",
            hint="run `starforge-backfill preflight --concurrency N` for the higher concurrency first, "
            "or pass --force --reason TEXT (recorded in the audit trail)",
        )


def require_for_run(
    conn: psycopg.Connection[Any],
    cfg: Any,
    from_ts: dt.datetime,
    to_ts: dt.datetime,
    concurrency: int,
    what: str = "run",
) -> list[dict[str, Any]]:
    """Refuse a production write (`what`: run, reprocess) unless its gates passed for this config, database,
    range and concurrency; return the gate rows it relies on."""
    problems, relied = check_for_run(conn, cfg, from_ts, to_ts, concurrency)
    if problems:
        raise GateFailed(
            f"{what} refused: " + "; ".join(problems),
            hint="run `starforge-backfill preflight` and `starforge-backfill canary` first (on this database; "
            "preflight for this range and --concurrency), or pass --force --reason TEXT (recorded in the audit trail)",
        )
    return relied
