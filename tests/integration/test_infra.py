"""The test-database plumbing itself: per-test isolation, schema loading, the embedded server."""

from __future__ import annotations

import socket

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from starforge_backfill.embedded import EmbeddedPostgres


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows}


def test_fresh_db_has_the_schema(pg_conn: psycopg.Connection, pg_dsn: str) -> None:
    assert {"users", "hero_snapshots", "backfill_jobs"} <= _tables(pg_conn)
    assert pg_conn.autocommit
    with psycopg.connect(pg_dsn) as other:  # pg_dsn points at the same database as pg_conn
        assert other.info.dbname == pg_conn.info.dbname


# The next two tests are identical on purpose: whichever runs second fails if the first one's row leaked.
def test_writes_do_not_leak_a(pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("INSERT INTO troop_catalog (id, name) VALUES (1, 'a')")
    assert pg_conn.execute("SELECT count(*) FROM troop_catalog").fetchone() == (1,)


def test_writes_do_not_leak_b(pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("INSERT INTO troop_catalog (id, name) VALUES (1, 'b')")
    assert pg_conn.execute("SELECT count(*) FROM troop_catalog").fetchone() == (1,)


def test_empty_db_has_no_schema(empty_dsn: str, pg_dsn: str) -> None:
    with psycopg.connect(empty_dsn) as conn:
        assert "users" not in _tables(conn)
        assert conn.info.dbname != conninfo_to_dict(pg_dsn)["dbname"]


def test_server_dsn_is_admin(server_dsn: str) -> None:
    with psycopg.connect(server_dsn) as conn:
        assert conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            True,
        )


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@pytest.mark.slow
def test_embedded_postgres_starts_and_stops() -> None:
    pg = EmbeddedPostgres()
    dsn = pg.start()
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.stop()
    pg.stop()  # idempotent
    params = conninfo_to_dict(dsn)
    host = params.get("host", "")
    if host.startswith("/"):  # the pgserver fallback listens on a unix socket only
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
    else:
        assert not _accepts(host, int(params["port"]))
