"""Fixtures for the topology tests: a real PgBouncer per pool mode, a primary of our own with a streaming
standby (tests/topo_support.py). Nothing here skips: a missing pgbouncer or PostgreSQL binary fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from topo_support import PgBouncer

from starforge_backfill.embedded import EmbeddedPostgres


@pytest.fixture(scope="module", params=["transaction", "session"])
def bouncer(request: pytest.FixtureRequest, server_dsn: str) -> Iterator[PgBouncer]:
    """Module: PgBouncer in front of the test server, in each pool mode. Transaction pooling with 2 server
    connections per database, fewer than the clients of a C=2 run (workers, the run's own connections,
    the operator's commands): statements land on different server connections. Session pooling gives each
    client a server connection for its whole session, so it needs as many as there are clients."""
    size = 2 if request.param == "transaction" else 8
    pgb = PgBouncer(server_dsn, request.param, pool_size=size).start()
    try:
        yield pgb
    finally:
        pgb.stop()


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own (initdb'd, the postgres OS user), to restart or replicate."""
    pg = EmbeddedPostgres()
    pg.start()
    if pg.pgdata is None:
        pg.stop()
        raise AssertionError("the topology tests need the system PostgreSQL binaries (initdb, pg_ctl)")
    try:
        yield pg
    finally:
        pg.stop()
