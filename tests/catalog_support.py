"""A backfilled database with placeholder catalog rows, for the `catalog` tests: the post-backfill corpus run
under catalog policy placeholder, plus pet MISSING_PET seen by two users and two placeholders nobody uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from runbook_post_corpus import (
    FROM,
    MISSING_TROOP,
    SNAPSHOTS_PER_USER,
    TO,
    at,
    good_payload,
    insert,
    load_corpus,
    namecode,
)
from runbook_post_corpus import make_cfg as _make_cfg
from running import run_job

from starforge_backfill.config import Config

MISSING_PET = 500  # in the newest snapshot of users 0 and 1, absent from pet_catalog
UNUSED = (("troop", 998), ("artifact", 700))  # placeholder rows no user_* row references
CATALOGS = ("troop_catalog", "pet_catalog", "artifact_catalog")


def make_cfg(dsn: str, artifacts_dir: Path) -> Config:
    """The test database's config (policy placeholder, the default)."""
    cfg = _make_cfg(dsn, artifacts_dir)
    assert cfg.etl.catalog_policy == "placeholder"
    return cfg


def backfill_with_placeholders(dsn: str, cfg: Config) -> None:
    """Load the corpus (+ MISSING_PET), run the ETL over it (placeholders troop 999 and pet 500 are made),
    then add the UNUSED placeholders by hand."""
    load_corpus(dsn, bad=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in (0, 1):
            payload = good_payload(i, SNAPSHOTS_PER_USER)
            payload["ProfileData"]["Pets"].append({"PetId": MISSING_PET, "Amount": 1, "Level": 2})
            insert(conn, payload, namecode(i), at(i, SNAPSHOTS_PER_USER))
    res = run_job(cfg, from_ts=FROM, to_ts=TO, force=True, reason="catalog test")
    assert res.outcome == "done", res.summary()
    with psycopg.connect(dsn, autocommit=True) as conn:
        made = conn.execute(
            "SELECT 'troop', id FROM troop_catalog WHERE meta ->> 'placeholder' = 'true' UNION ALL "
            "SELECT 'pet', id FROM pet_catalog WHERE meta ->> 'placeholder' = 'true' ORDER BY 1, 2"
        ).fetchall()
        assert made == [("pet", MISSING_PET), ("troop", MISSING_TROOP)], made
        conn.execute("INSERT INTO troop_catalog (id, meta) VALUES (%s, '{\"placeholder\": true}')", [UNUSED[0][1]])
        conn.execute("INSERT INTO artifact_catalog (id, meta) VALUES (%s, '{\"placeholder\": true}')", [UNUSED[1][1]])


def catalog_rows(dsn: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    """Every catalog row: (catalog, id) -> (name, meta, xmin), to prove what a command did or did not write."""
    out: dict[tuple[str, int], tuple[Any, ...]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in CATALOGS:
            rows = conn.execute(f"SELECT id, name, meta, xmin::text FROM {table}").fetchall()  # type: ignore[arg-type]
            for ident, name, meta, xmin in rows:
                out[(table.removesuffix("_catalog"), ident)] = (name, meta, xmin)
    return out


def orphans(dsn: str) -> list[tuple[str, int]]:
    """(kind, id) of user_* rows whose catalog row is missing."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT 'troop', troop_id FROM user_troops t WHERE NOT EXISTS "
            "(SELECT 1 FROM troop_catalog c WHERE c.id = t.troop_id) UNION ALL "
            "SELECT 'pet', pet_id FROM user_pets t WHERE NOT EXISTS "
            "(SELECT 1 FROM pet_catalog c WHERE c.id = t.pet_id) "
            "UNION ALL SELECT 'artifact', artifact_id FROM user_artifacts t WHERE NOT EXISTS "
            "(SELECT 1 FROM artifact_catalog c WHERE c.id = t.artifact_id)"
        ).fetchall()
