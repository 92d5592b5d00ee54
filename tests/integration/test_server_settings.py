"""preflight's `server-settings` item and plan's notes: shared_buffers, max_wal_size, checkpoint_timeout
against the size of a backfill, read from a real server."""

from __future__ import annotations

from pathlib import Path

import psycopg
from runbook_corpus import FROM, TO, load_corpus, make_cfg

from starforge_backfill.runbook import server_settings as ss
from starforge_backfill.runbook.plan import plan
from starforge_backfill.runbook.preflight import preflight

MB = ss.MB


def test_read_reports_the_servers_settings_and_table_sizes(pg_conn: psycopg.Connection) -> None:
    s = ss.read(pg_conn)
    sb, wal = pg_conn.execute(
        "SELECT pg_size_bytes(current_setting('shared_buffers')), pg_size_bytes(current_setting('max_wal_size'))"
    ).fetchone()
    assert (s.shared_buffers, s.max_wal_size) == (sb, wal)
    assert s.checkpoint_timeout_s == int(
        pg_conn.execute("SELECT setting FROM pg_settings WHERE name = 'checkpoint_timeout'").fetchone()[0]
    )
    before = s.tables_bytes
    pg_conn.execute("INSERT INTO users (namecode) SELECT 'N' || i FROM generate_series(1, 20000) AS i")
    assert ss.read(pg_conn).tables_bytes > before + 500_000  # heap and both indexes of users grew


def test_assess_warns_per_setting_only_past_its_threshold(pg_conn: psycopg.Connection) -> None:
    s = ss.read(pg_conn)
    small = ss.assess(s, 1_000, 1_000.0)
    assert small[1] == []
    # enough snapshots to outgrow shared_buffers: the warning names both sizes and the measured effect
    n = (s.shared_buffers // ss.BENCH_TABLE_BYTES_PER_SNAPSHOT) * 2
    data, warnings = ss.assess(s, n, 1.0)
    assert [w.split(" ")[0] for w in warnings] == ["shared_buffers"]
    assert data["working_set_mb"] >= 2 * s.shared_buffers // MB and "measured" in warnings[0]
    # WAL: a rate that fills max_wal_size well within one checkpoint_timeout
    fast = s.max_wal_size * 4 / ss.BENCH_WAL_BYTES_PER_SNAPSHOT / s.checkpoint_timeout_s
    data, warnings = ss.assess(ss.ServerSettings(1 << 40, s.max_wal_size, s.checkpoint_timeout_s, 0), 10**8, fast)
    assert [w.split(" ")[0] for w in warnings] == ["max_wal_size"]
    assert data["wal_per_checkpoint_timeout_mb"] > s.max_wal_size // MB
    short = ss.ServerSettings(1 << 40, 1 << 40, 60, 0)
    assert [w.split(" ")[0] for w in ss.assess(short, 10**8, 1.0)[1]] == ["checkpoint_timeout"]


def test_preflight_item_and_plan_notes(pg_conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path / "art")
    check = preflight(cfg, from_ts=FROM, to_ts=TO).check("server-settings")
    assert check.passed and check.warning is None, check.to_json()
    n = pg_conn.execute(
        "SELECT count(*) FROM hero_snapshots WHERE created_at >= %s AND created_at < %s", (FROM, TO)
    ).fetchone()[0]
    assert check.data["snapshots"] == n > 0
    assert check.data["shared_buffers_mb"] == ss.read(pg_conn).shared_buffers // MB
    notes = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=0.001).notes
    assert not [x for x in notes if x.startswith("server setting")]
    # the normalized tables already far larger than shared_buffers: both steps say so
    pg_conn.execute(
        "INSERT INTO users (namecode, username) SELECT 'BIG' || i, repeat('x', 1500) FROM generate_series(1, %s) AS i",
        (ss.read(pg_conn).shared_buffers // 1400,),
    )
    check = preflight(cfg, from_ts=FROM, to_ts=TO).check("server-settings")
    assert check.passed and check.warning and check.warning.startswith("shared_buffers"), check.to_json()
    notes = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=0.001).notes
    assert [x for x in notes if x.startswith("server setting: shared_buffers")]
