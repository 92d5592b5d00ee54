"""Superseded elements: an element of a snapshot older than its user's summary, whose row already holds a newer
observation, is validated but not staged (stage.sql's `loses`); everything else is staged and merged as usual.
Newest-first backfills make most elements superseded, so this is where their time goes."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from helpers import apply, at, error_set, insert_snapshot, one, payload, rows, seed_catalog, state

from starforge_backfill import templates
from starforge_backfill.etl import pipeline as pipeline_module
from starforge_backfill.etl.pipeline import EtlSettings

READERS = pytest.mark.parametrize("elements", ["recordset", "each"])


def _staged(conn: psycopg.Connection, ids: list[uuid.UUID], elements: str) -> dict[str, list[tuple[Any, ...]]]:
    """Run only the stage of `ids` in a transaction that is rolled back; the staged (sid, id, ok) per entity."""
    settings = EtlSettings()
    with conn.transaction(force_rollback=True):
        pipeline_module._session_settings(conn, settings)
        templates.execute(conn, "etl/stage_tables.sql", catalog_policy=settings.catalog_policy)
        templates.execute(
            conn,
            "etl/stage.sql",
            {"ids": ids},
            catalog_policy=settings.catalog_policy,
            source="table",
            elements=elements,
        )
        return {
            "troop": [tuple(r.values()) for r in rows(conn, "SELECT sid, troop_id, ok FROM sf_stage_troop ORDER BY 2")],
            "pet": [tuple(r.values()) for r in rows(conn, "SELECT sid, pet_id, ok FROM sf_stage_pet ORDER BY 2")],
            "snap": [tuple(r.values()) for r in rows(conn, "SELECT sid, ok FROM sf_stage_snap")],
        }


def _troops(conn: psycopg.Connection) -> dict[int, tuple[int, Any]]:
    return {r["troop_id"]: (r["amount"], r["last_seen"]) for r in rows(conn, "SELECT * FROM user_troops")}


@READERS
def test_an_older_snapshots_superseded_elements_are_not_staged_and_the_rest_is_applied(
    pg_conn: psycopg.Connection, elements: str
) -> None:
    seed_catalog(pg_conn, troops=[1, 2, 3], pets=[7])
    new = insert_snapshot(
        pg_conn,
        payload("SUPER_A", Troops=[{"TroopId": 1, "Amount": 10}, {"TroopId": 2, "Amount": 20}], Pets=[{"PetId": 7}]),
        created_at=at(10),
    )
    apply(pg_conn, [new])
    old = insert_snapshot(
        pg_conn,
        payload(
            "SUPER_A",
            Troops=[{"TroopId": 1, "Amount": 1}, {"TroopId": 2, "Amount": 2, "X": 1}, {"TroopId": 3, "Amount": 3}],
            Pets=[{"PetId": 7, "Level": 2}],
        ),
        created_at=at(5),
    )
    # troops 1 and 2 and pet 7 already hold the newer observation: only troop 3 (absent from the newer
    # snapshot) is staged; the snapshot itself is staged and ok
    staged = _staged(pg_conn, [old], elements)
    assert staged == {"troop": [(old, 3, True)], "pet": [], "snap": [(old, True)]}

    res = apply(pg_conn, [old])
    assert (res.applied, res.failed) == (1, 0)
    assert res.rows_written["user_troops"] == 1
    assert _troops(pg_conn) == {1: (10, at(10)), 2: (20, at(10)), 3: (3, at(5))}
    assert one(pg_conn, "SELECT level, last_seen FROM user_pets") == {"level": 1, "last_seen": at(10)}
    assert one(pg_conn, "SELECT source_snapshot_id FROM user_profile_summary")["source_snapshot_id"] == new
    assert one(pg_conn, "SELECT processed_at IS NOT NULL AS done FROM hero_snapshots WHERE id = %s", [old])["done"]


@READERS
def test_a_superseded_element_is_still_validated(pg_conn: psycopg.Connection, elements: str) -> None:
    seed_catalog(pg_conn, troops=[1])
    new = insert_snapshot(pg_conn, payload("SUPER_B", Troops=[{"TroopId": 1, "Amount": 10}]), created_at=at(10))
    apply(pg_conn, [new])
    before = state(pg_conn)
    bad = insert_snapshot(pg_conn, payload("SUPER_B", Troops=[{"TroopId": 1, "Amount": "abc"}]), created_at=at(5))
    # the invalid element is staged (not ok) although its row is newer, so the snapshot fails validation
    assert _staged(pg_conn, [bad], elements)["troop"] == [(bad, None, False)]
    res = apply(pg_conn, [bad])
    assert (res.applied, res.failed) == (0, 1)
    assert error_set(pg_conn) == {(bad, "VALIDATION_ERROR")}
    assert state(pg_conn) == before


def test_a_row_older_than_the_snapshot_is_staged_even_when_the_summary_is_newer(pg_conn: psycopg.Connection) -> None:
    # troop 3 is only in the oldest snapshot: its row stays at that observation while the summary moves on,
    # so a snapshot in between still wins for troop 3 (and loses for troop 1)
    seed_catalog(pg_conn, troops=[1, 3])
    oldest = insert_snapshot(pg_conn, payload("SUPER_C", Troops=[{"TroopId": 3, "Amount": 3}]), created_at=at(1))
    newest = insert_snapshot(pg_conn, payload("SUPER_C", Troops=[{"TroopId": 1, "Amount": 10}]), created_at=at(10))
    apply(pg_conn, [oldest])
    apply(pg_conn, [newest])
    middle = insert_snapshot(
        pg_conn,
        payload("SUPER_C", Troops=[{"TroopId": 1, "Amount": 5}, {"TroopId": 3, "Amount": 33}]),
        created_at=at(5),
    )
    assert [r[1] for r in _staged(pg_conn, [middle], "recordset")["troop"]] == [3]
    apply(pg_conn, [middle])
    assert _troops(pg_conn) == {1: (10, at(10)), 3: (33, at(5))}


def test_a_row_whose_catalog_id_is_gone_is_not_taken_as_superseding(pg_conn: psycopg.Connection) -> None:
    # an element is left out only when its id is in the catalog: with the catalog row deleted since, policy
    # `fail` still rejects an older snapshot that uses it, as the reference path and an oldest-first pass would
    seed_catalog(pg_conn, troops=[1])
    new = insert_snapshot(pg_conn, payload("SUPER_D", Troops=[{"TroopId": 1, "Amount": 10}]), created_at=at(10))
    apply(pg_conn, [new])
    pg_conn.execute("DELETE FROM troop_catalog")
    old = insert_snapshot(pg_conn, payload("SUPER_D", Troops=[{"TroopId": 1, "Amount": 1}]), created_at=at(5))
    assert [r[1] for r in _staged(pg_conn, [old], "recordset")["troop"]] == [1]
    for fast_path in (True, False):
        res = apply(pg_conn, [old], EtlSettings(catalog_policy="fail", fast_path=fast_path))
        assert (res.applied, res.failed) == (0, 1)
    assert {e for _, e in error_set(pg_conn)} == {"FK_VIOLATION"}
    assert _troops(pg_conn) == {1: (10, at(10))}


def test_a_row_the_snapshot_itself_wrote_is_staged_again(pg_conn: psycopg.Connection) -> None:
    # strictly newer: troop 3's row holds this very snapshot's observation (equal, not newer), so reprocessing
    # it stages troop 3 and compares it (a changed mapping would rewrite it); troop 1 is superseded
    seed_catalog(pg_conn, troops=[1, 3])
    old = insert_snapshot(
        pg_conn, payload("SUPER_H", Troops=[{"TroopId": 1}, {"TroopId": 3, "Amount": 3}]), created_at=at(5)
    )
    apply(pg_conn, [old])
    apply(pg_conn, [insert_snapshot(pg_conn, payload("SUPER_H", Troops=[{"TroopId": 1}]), created_at=at(10))])
    assert [r[1] for r in _staged(pg_conn, [old], "recordset")["troop"]] == [3]


def test_a_snapshot_newer_than_its_summary_is_staged_in_full(pg_conn: psycopg.Connection) -> None:
    # only a snapshot older than its user's summary may leave elements out: merge.sql builds the summary's top
    # troops from the staged troops of a snapshot newer than the summary. Here the summary was rebuilt (by an
    # operator, say) from an even older snapshot, so the snapshot at minute 5 becomes the summary, top troops
    # and all, although every one of its rows is superseded by the one at minute 10
    seed_catalog(pg_conn, troops=[1, 2])
    apply(
        pg_conn,
        [insert_snapshot(pg_conn, payload("SUPER_I", Troops=[{"TroopId": 1}, {"TroopId": 2}]), created_at=at(10))],
    )
    pg_conn.execute("DELETE FROM user_profile_summary")
    apply(pg_conn, [insert_snapshot(pg_conn, payload("SUPER_I", Troops=[{"TroopId": 1}]), created_at=at(1))])
    old = insert_snapshot(
        pg_conn,
        payload("SUPER_I", Troops=[{"TroopId": 1, "Amount": 7}, {"TroopId": 2, "Amount": 9}]),
        created_at=at(5),
    )
    assert [r[1] for r in _staged(pg_conn, [old], "recordset")["troop"]] == [1, 2]
    apply(pg_conn, [old])
    summary = one(pg_conn, "SELECT source_snapshot_id, top_troops FROM user_profile_summary")
    assert summary["source_snapshot_id"] == old
    assert [t["troop_id"] for t in summary["top_troops"]] == [2, 1]


def test_the_same_snapshot_again_is_staged_in_full(pg_conn: psycopg.Connection) -> None:
    # equal (last_seen, source_snapshot_id) is not newer: a reprocessed snapshot is staged and compared, so a
    # changed mapping would rewrite its rows
    seed_catalog(pg_conn, troops=[1, 2])
    sid = insert_snapshot(
        pg_conn, payload("SUPER_E", Troops=[{"TroopId": 1, "Amount": 1}, {"TroopId": 2}]), created_at=at(3)
    )
    apply(pg_conn, [sid])
    assert [r[1] for r in _staged(pg_conn, [sid], "recordset")["troop"]] == [1, 2]


def test_the_superseded_lookup_is_a_hashed_subplan(pg_conn: psycopg.Connection) -> None:
    # the lookup is an `IN (subquery)` probed once per element: only a hashed subplan keeps that linear, and
    # PostgreSQL hashes it only when its estimate of the set fits work_mem (pipeline.SUPERSEDED_MAX_BATCH).
    # 20,000 rows per user and entity, under the batch's own settings: hashed for every entity
    seed_catalog(pg_conn, troops=[1], pets=[1], artifacts=[1])
    new = insert_snapshot(
        pg_conn,
        payload("SUPER_F", Troops=[{"TroopId": 1}], Pets=[{"PetId": 1}], Artifacts=[{"ArtifactId": 1}]),
        created_at=at(10),
    )
    apply(pg_conn, [new])
    for table, catalog, column in (
        ("user_troops", "troop_catalog", "troop_id"),
        ("user_pets", "pet_catalog", "pet_id"),
        ("user_artifacts", "artifact_catalog", "artifact_id"),
    ):
        pg_conn.execute(f"INSERT INTO {catalog} (id) SELECT g FROM generate_series(2, 20000) AS g")
        pg_conn.execute(
            f"INSERT INTO {table} (user_id, {column}, last_seen, source_snapshot_id)"
            f" SELECT user_id, g, last_seen, source_snapshot_id FROM {table}, generate_series(2, 20000) AS g"
        )
    pg_conn.execute("ANALYZE")
    old = insert_snapshot(pg_conn, payload("SUPER_F", Troops=[{"TroopId": 1}]), created_at=at(5))
    settings = EtlSettings()
    stage = templates.render(
        "etl/stage.sql", catalog_policy=settings.catalog_policy, source="table", elements="recordset"
    )
    with pg_conn.transaction(force_rollback=True):
        pipeline_module._session_settings(pg_conn, settings)
        templates.execute(pg_conn, "etl/stage_tables.sql", catalog_policy=settings.catalog_policy)
        plan = "\n".join(r[0] for r in pg_conn.execute("EXPLAIN VERBOSE " + stage, {"ids": [old]}))
    assert plan.count("hashed SubPlan") == 3, plan


def test_a_batch_over_the_lookups_size_is_staged_in_full_and_applied_the_same(
    pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_catalog(pg_conn, troops=[1, 2])
    new = insert_snapshot(pg_conn, payload("SUPER_G", Troops=[{"TroopId": 1, "Amount": 10}]), created_at=at(10))
    apply(pg_conn, [new])
    old = insert_snapshot(
        pg_conn, payload("SUPER_G", Troops=[{"TroopId": 1, "Amount": 1}, {"TroopId": 2, "Amount": 2}]), created_at=at(5)
    )
    monkeypatch.setattr(pipeline_module, "SUPERSEDED_MAX_BATCH", 0)
    settings = EtlSettings()
    with pg_conn.transaction(force_rollback=True):
        pipeline_module._session_settings(pg_conn, settings)
        templates.execute(pg_conn, "etl/stage_tables.sql", catalog_policy=settings.catalog_policy)
        pipeline_module._stage(pg_conn, [old], settings, pipeline_module.BatchResult(snapshots=1))
        assert [r["troop_id"] for r in rows(pg_conn, "SELECT troop_id FROM sf_stage_troop ORDER BY 1")] == [1, 2]
    apply(pg_conn, [old])
    assert _troops(pg_conn) == {1: (10, at(10)), 2: (2, at(5))}
