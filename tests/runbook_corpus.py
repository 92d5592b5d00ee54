"""A small synthetic corpus (with malformed snapshots and ids missing from the catalogs) for the runbook-step tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill.config import Config, load_config
from starforge_backfill.synthetic import SyntheticSpec, generate, load

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FROM, TO = "2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z"
SPEC = SyntheticSpec(
    snapshots=48,
    users=10,
    seed=5,
    start=T0,
    span_days=10,
    size_mix=((0.6, 3_000), (0.3, 12_000), (0.1, 60_000)),
    malformed_ratio=0.15,
)
NORMALIZED = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary")
CATALOGS = ("troop_catalog", "pet_catalog", "artifact_catalog")


def load_corpus(dsn: str) -> dict[str, str]:
    """Load SPEC into the database at `dsn`; returns {snapshot id: kind ("ok" or "malformed:...")}."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        load(conn, SPEC)
    return {str(s.id): s.kind for s in generate(SPEC)}


def make_cfg(dsn: str, artifacts_dir: Path, **dotted: Any) -> Config:
    """A config for the test database, artifacts under `artifacts_dir`, plus dotted overrides."""
    cfg = load_config(None, env={}, overrides={"database.dsn": dsn, "artifacts_dir": str(artifacts_dir)})
    return cfg.replace(**dotted) if dotted else cfg


def state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Everything a backfill could leave behind in the main database, counted."""
    out: dict[str, Any] = {}
    for table in (*NORMALIZED, "etl_errors", "backfill_username_seen", *CATALOGS):
        out[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
    for table in CATALOGS:
        out[f"{table}.placeholders"] = conn.execute(
            f"SELECT count(*) FROM {table} WHERE meta ? 'placeholder'"
        ).fetchone()[0]  # type: ignore[index]
    out["snapshots"] = conn.execute(
        "SELECT count(*) FILTER (WHERE processed_at IS NOT NULL), coalesce(sum(error_count), 0),"
        " count(*) FILTER (WHERE last_error IS NOT NULL), count(*) FILTER (WHERE processing),"
        " count(*) FILTER (WHERE user_id IS NOT NULL) FROM hero_snapshots"
    ).fetchone()
    return out
