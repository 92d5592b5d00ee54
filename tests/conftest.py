"""Real PostgreSQL for the test suite: a fresh database per test, cloned from a template (pytest-postgresql).

Server, in order: $STARFORGE_TEST_DSN; else postgres@127.0.0.1:5432 if it answers within ~2 s (unless
STARFORGE_TEST_NO_LOCAL=1); else a throwaway `EmbeddedPostgres` started for the session and stopped at
its end. Public fixtures: `server_dsn`, `pg_dsn`, `pg_conn`, `empty_dsn`. (README.md, "Tests", documents
these variables for users; tests/cli/test_docs.py keeps every STARFORGE_* variable documented.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories

from starforge_backfill.embedded import EmbeddedPostgres, find_server

# the S3 fixtures (`moto`: a real moto server on a free port; `aws_env`: test credentials) for every test
pytest_plugins = ("s3_support",)

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "sql" / "schema"
# Unique per run so concurrent pytest runs (or CI jobs sharing one server) never touch each other's DBs.
_RUN_ID = f"{os.getpid()}_{secrets.token_hex(2)}"


@dataclass(frozen=True)
class _Server:
    """What pytest-postgresql's `postgresql_noproc(depends_on=...)` reads from its base fixture."""

    host: str | None
    port: int
    user: str | None
    password: str | None
    options: str
    maintenance_dbname: str
    template_dbname: None = None  # our templates are created from template1, not from another template


def _dsn(info: Any, dbname: str | None = None) -> str:
    """A libpq DSN from pytest-postgresql connection details (an executor/_Server object or a mapping)."""
    get = info.get if isinstance(info, Mapping) else lambda key: getattr(info, key, None)
    return make_conninfo(
        "",
        host=get("host"),
        port=get("port"),
        user=get("user"),
        password=get("password") or None,
        dbname=dbname or get("dbname") or get("maintenance_dbname"),
        options=get("options") or None,
    )


def _init_schema(**conn: Any) -> None:
    """pytest-postgresql `load` callable: gets host/port/user/dbname/password/autocommit kwargs."""
    dsn = _dsn(conn)
    try:
        from starforge_backfill.schema import init_db
    except ModuleNotFoundError as exc:  # schema.py not written yet: run the SQL files ourselves
        if exc.name != "starforge_backfill.schema":
            raise
        with psycopg.connect(dsn, autocommit=True) as db:
            for path in sorted(SCHEMA_DIR.glob("*.sql")):
                db.execute(path.read_text())  # type: ignore[arg-type]  # trusted repo SQL, no params
    else:
        init_db(dsn)


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[_Server]:
    dsn = find_server()
    embedded = None
    if dsn is None:
        embedded = EmbeddedPostgres()
        dsn = embedded.start()
    try:
        params = conninfo_to_dict(dsn)
        yield _Server(
            host=params.get("host"),
            port=int(params.get("port") or 5432),
            user=params.get("user"),
            password=params.get("password") or None,
            options=params.get("options") or "",
            maintenance_dbname=params.get("dbname") or "postgres",
        )
    finally:
        if embedded is not None:
            embedded.stop()


_pg_schema_proc = factories.postgresql_noproc(dbname=f"sf_test_{_RUN_ID}", load=[_init_schema], depends_on="_pg_server")
_pg_empty_proc = factories.postgresql_noproc(dbname=f"sf_empty_{_RUN_ID}", depends_on="_pg_server")
_pg_schema_db = factories.postgresql("_pg_schema_proc")
_pg_empty_db = factories.postgresql("_pg_empty_proc")


@pytest.fixture(scope="session")
def server_dsn(_pg_server: _Server) -> str:
    """Session: admin DSN of the test server (its maintenance database, normally `postgres`)."""
    return _dsn(_pg_server)


@pytest.fixture
def pg_dsn(_pg_schema_db: psycopg.Connection, _pg_schema_proc: Any) -> str:
    """DSN of a fresh database for this test with the full schema (sql/schema) loaded; dropped after."""
    return _dsn(_pg_schema_proc, dbname=_pg_schema_db.info.dbname)


@pytest.fixture
def pg_conn(_pg_schema_db: psycopg.Connection) -> psycopg.Connection:
    """psycopg connection (autocommit=True) to this test's fresh schema'd database (the `pg_dsn` one).

    Closed after the test.
    """
    _pg_schema_db.autocommit = True
    return _pg_schema_db


@pytest.fixture
def empty_dsn(_pg_empty_db: psycopg.Connection, _pg_empty_proc: Any) -> str:
    """DSN of a fresh, empty database for this test (no schema at all); dropped after."""
    return _dsn(_pg_empty_proc, dbname=_pg_empty_db.info.dbname)
