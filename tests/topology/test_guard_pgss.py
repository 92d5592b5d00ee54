"""The production guard reads pg_stat_statements when the extension is installed and preloaded: a server of
our own with `shared_preload_libraries = 'pg_stat_statements'`, an application role whose statements slow
down while the guard watches, and the guard slows the backfill on it (other roles only: the backfill's own
statements never count)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from starforge_backfill import settings as config_settings
from starforge_backfill.config import load_config
from starforge_backfill.embedded import EmbeddedPostgres
from starforge_backfill.schema import init_db

QUIET = {
    "throttle.enabled": True,
    "throttle.max_connections_ratio": 1.0,
    "throttle.probe_latency_ratio_max": 3,
    "throttle.probe_latency_ratio_critical": 0,
    "throttle.probe_floor_ms": 5,
    "throttle.active_sessions_max": 0,
    "throttle.waiting_sessions_max": 0,
    "throttle.dead_tuples_max": 0,
    "throttle.autovacuum_hold": False,
    "throttle.wal_bytes_per_s_max": 0,
    "throttle.block_check": "0s",
}


def test_other_roles_slower_statements_slow_the_backfill(own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    with psycopg.connect(own_server.dsn, autocommit=True) as c:
        c.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    own_server.restart()
    with psycopg.connect(own_server.dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE sf_pgss")
        c.execute("CREATE ROLE app LOGIN")
    info = conninfo_to_dict(own_server.dsn)
    dsn = make_conninfo("", **(info | {"dbname": "sf_pgss"}))
    app_dsn = make_conninfo("", **(info | {"dbname": "sf_pgss", "user": "app"}))
    init_db(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_stat_statements")
    with psycopg.connect(app_dsn, autocommit=True) as app:
        for _ in range(100):  # the application's usual statements, before the job
            app.execute("SELECT 1")
    overrides = QUIET | {"database.dsn": dsn, "artifacts_dir": str(tmp_path / "a")}
    guard = config_settings.production_guard(load_config(None, overrides=overrides), "pgss-job")
    try:
        guard.check()
        assert guard.other_baseline_ms is not None and guard.other_baseline_ms < 5
        with psycopg.connect(dsn, autocommit=True) as own:  # the backfill's own role: never counted
            for _ in range(30):
                own.execute("SELECT pg_sleep(0.02)")
        guard._checked = 0.0
        guard.check()
        assert guard.level == "healthy" and guard.last["other_mean_ms"] is None  # no call of another role
        with psycopg.connect(app_dsn, autocommit=True) as app:
            for _ in range(25):
                app.execute("SELECT pg_sleep(0.02)")
        guard._checked = 0.0
        guard.check()
        assert guard.last["other_mean_ms"] >= 15, guard.last
        assert guard.level == "slow" and guard.verdict.key == "slow:other-statements"
        with psycopg.connect(dsn) as c:
            row = c.execute(
                "SELECT other_mean_ms, other_baseline_ms, state FROM guard_readings ORDER BY id DESC"
            ).fetchone()
        assert row is not None and row[0] >= 15 and row[1] < 5 and row[2] == "slow"
    finally:
        guard.close()
