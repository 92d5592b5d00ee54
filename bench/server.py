"""Which PostgreSQL the bench uses, and the throwaway databases it creates and drops there."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_DROP = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "sql" / "schema"


@dataclass
class Server:
    """An admin DSN, where it came from, and the databases this run created on it."""

    dsn: str
    origin: str  # "--dsn", "$STARFORGE_BENCH_DSN", "local", "embedded"
    embedded: Any = None
    created: list[str] = field(default_factory=list)

    def db_dsn(self, dbname: str) -> str:
        """The DSN of one database on this server."""
        return make_conninfo(self.dsn, dbname=dbname)

    def admin(self) -> psycopg.Connection[Any]:
        """An autocommit connection for CREATE/DROP DATABASE and CHECKPOINT."""
        return psycopg.connect(self.dsn, autocommit=True, application_name="starforge-bench")

    def info(self) -> dict[str, Any]:
        """Server version and the settings that change what the figures mean."""
        with self.admin() as conn:
            names = (
                "server_version",
                "fsync",
                "synchronous_commit",
                "shared_buffers",
                "max_wal_size",
                "full_page_writes",
            )
            rows = conn.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", (list(names),)
            ).fetchall()
        return {"origin": self.origin, **{n: f"{s}{'' if not u else ' ' + u}" for n, s, u in rows}}

    def create_db(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE name [TEMPLATE template]; remembered for `drop_all`. Returns its DSN."""
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(_DROP.format(sql.Identifier(name)))
            conn.execute(stmt)
        self.created.append(name)
        return self.db_dsn(name)

    def drop(self, name: str) -> None:
        """Drop one database this run created (its autovacuum must not run into the next measurement)."""
        with self.admin() as conn:
            conn.execute(_DROP.format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def checkpoint(self) -> None:
        """Flush dirty buffers so one method's writes are not paid for by the next (needs privilege)."""
        with contextlib.suppress(psycopg.Error), self.admin() as conn:
            conn.execute("CHECKPOINT")

    def drop_all(self) -> list[str]:
        """Drop every database this run created; return the ones that could not be dropped."""
        failed = []
        for name in reversed(self.created):
            try:
                with self.admin() as conn:
                    conn.execute(_DROP.format(sql.Identifier(name)))
            except psycopg.Error:
                failed.append(name)
        self.created.clear()
        return failed

    def stop(self) -> None:
        """Stop the embedded server if this run started one."""
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[Server]:
    """--dsn, else $STARFORGE_BENCH_DSN, else the local 5432 server if it answers, else an embedded one."""
    env = os.environ.get("STARFORGE_BENCH_DSN", "").strip()
    if dsn:
        srv = Server(dsn, "--dsn")
    elif env:
        srv = Server(env, "$STARFORGE_BENCH_DSN")
    elif _reachable(LOCAL_DSN):
        srv = Server(LOCAL_DSN, "local")
    else:
        from starforge_backfill.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres()
        srv = Server(embedded.start(), "embedded", embedded=embedded)
    try:
        yield srv
    finally:
        try:
            srv.drop_all()
        finally:
            srv.stop()


def corpus_db(srv: Server, name: str, spec: Any) -> tuple[str, Any]:
    """A data database for the benches: the schema, `spec`'s synthetic snapshots (`synthetic.load`), then
    VACUUM (FREEZE, ANALYZE) so no measurement meets its autovacuum. Returns its DSN and the load's stats."""
    from starforge_backfill.synthetic import load

    dsn = srv.create_db(name)
    init_schema(dsn)
    with psycopg.connect(dsn) as conn:
        stats = load(conn, spec)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
    return dsn, stats


def init_schema(dsn: str) -> None:
    """The project's `init_db` when importable, else the schema files in order on an autocommit connection."""
    try:
        from starforge_backfill.schema import init_db
    except ImportError:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for path in sorted(SCHEMA_DIR.glob("*.sql")):
                conn.execute(path.read_text().encode())
    else:
        init_db(dsn)
