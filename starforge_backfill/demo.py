"""The demo's plumbing (no click, no rich): an embedded or given server, a fresh database, synthetic data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from starforge_backfill import schema, synthetic, templates
from starforge_backfill.embedded import EmbeddedPostgres

DEMO_CONFIG = """\
# starforge-backfill demo config: production defaults, except where a 3-minute demo needs shorter windows.
database:
  statement_timeout: 120s
etl:
  catalog_policy: placeholder
  batch_size: 100
job:
  owner: demo
  chunk_size: 200
throttle:
  failure_rate_max: 0.05   # the demo corpus is ~1% malformed on purpose
  failure_min_sample: 100
gates:
  required_approvals: [engineering, sre]
  ramp: [1, 2]
  ramp_step: 5s
canary:
  observe: 5s
  concurrency: 1
  users: 15
sample:
  buckets: [3, 3, 4]
  include_bad: 3
"""


@dataclasses.dataclass
class DemoDatabase:
    """A database for one demo run, and how to clean it up."""

    dsn: str
    admin_dsn: str
    server: EmbeddedPostgres | None
    created_db: str | None

    def close(self, *, keep_server: bool = False) -> None:
        """Stop the embedded server (unless kept)."""
        if self.server is None:
            return
        if keep_server:
            self.server.detach()
        else:
            self.server.stop()


def open_database(dsn: str | None, *, keep_server: bool = False, data_dir: Path | None = None) -> DemoDatabase:
    """A fresh demo database: on the given server (a new database, nothing existing is touched) or an
    embedded PostgreSQL this process owns."""
    server = None
    if dsn is None:
        server = EmbeddedPostgres(data_dir=data_dir if keep_server else None)
        admin = server.start()
    else:
        admin = dsn
    name = f"starforge_demo_{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}_{secrets.token_hex(2)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params: dict[str, Any] = conninfo_to_dict(admin)
    params["dbname"] = name
    return DemoDatabase(dsn=make_conninfo(**params), admin_dsn=admin, server=server, created_db=name)


def demo_spec(snapshots: int, seed_value: int = 7, bad_rate: float = 0.01) -> synthetic.SyntheticSpec:
    """The demo's synthetic corpus (also `synth load`'s): `bad_rate` malformed, a few 2-3 MB, 5 catalog ids
    missing, created over 180 days from 2024-01-01."""
    users = max(10, snapshots // 8)
    large_share = min(0.05, 4 / max(snapshots, 1)) if snapshots < 80 else 0.005
    return synthetic.SyntheticSpec(
        snapshots=snapshots,
        users=users,
        seed=seed_value,
        size_mix=((0.80 - large_share, 12_000), (0.20, 60_000), (large_share, 2_500_000)),
        malformed_ratio=bad_rate,
        missing_catalog_ids=5,
    )


def seed(dsn: str, snapshots: int, seed_value: int = 7) -> tuple[synthetic.SyntheticSpec, Any]:
    """`db init`'s schema plus synthetic snapshots (~1% malformed, a few 2-3 MB, catalog ids missing)."""
    schema.init_db(dsn)
    spec = demo_spec(snapshots, seed_value)
    with psycopg.connect(dsn, autocommit=True) as conn:
        stats = synthetic.load(conn, spec)
        conn.execute("ANALYZE")
    return spec, stats


RECOVERY_RANGE = ("2024-07-01T00:00:00Z", "2024-07-02T00:00:00Z")
LATE_TROOP = 990001  # a troop no catalog has until the recovery path's `catalog import`


def recovery_config(main: str) -> str:
    """The demo config under catalog policy `fail`, with an error budget its deliberate failures stay within."""
    return main.replace("catalog_policy: placeholder", "catalog_policy: fail").replace(
        "failure_rate_max: 0.05", "failure_rate_max: 0.5"
    )


def seed_recovery(dsn: str, users: int = 12, every: int = 3) -> tuple[int, int]:
    """Newer copies of `users` users' newest snapshots in RECOVERY_RANGE, every `every`-th also using
    LATE_TROOP; returns (copies, copies using it)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = templates.execute(
            conn,
            "synth/recovery_copies.sql",
            {"users": users, "from_ts": RECOVERY_RANGE[0], "troop_id": LATE_TROOP, "every": every},
        ).fetchall()
    return len(rows), sum(1 for r in rows if r[0])
