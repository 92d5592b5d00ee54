"""`catalog placeholders`, `catalog import` and `catalog cleanup` against real PostgreSQL (plain Python API)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from catalog_support import MISSING_PET, UNUSED, backfill_with_placeholders, catalog_rows, make_cfg, orphans
from runbook_post_corpus import MISSING_TROOP

from starforge_backfill import artifacts
from starforge_backfill.errors import GateFailed, UsageError
from starforge_backfill.runbook.catalog import cleanup, import_catalog, placeholders


@pytest.fixture
def cfg(pg_dsn: str, tmp_path: Path) -> Any:
    cfg = make_cfg(pg_dsn, tmp_path / "artifacts")
    backfill_with_placeholders(pg_dsn, cfg)
    return cfg


def _usage(dsn: str, kind: str, ident: int) -> tuple[int, int]:
    """(rows, distinct users) of the user_* table of `kind` using `ident`, counted here independently."""
    table, col = {"troop": ("user_troops", "troop_id"), "pet": ("user_pets", "pet_id")}.get(
        kind, ("user_artifacts", "artifact_id")
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT user_id) FROM {table} WHERE {col} = %s",  # type: ignore[arg-type]
            [ident],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_placeholders_lists_each_with_its_usage(cfg: Any, pg_dsn: str) -> None:
    res = placeholders(cfg)
    listed = [(p.kind, p.id, p.name, p.rows, p.users) for p in res.placeholders]
    assert listed == [
        ("artifact", 700, None, 0, 0),
        ("pet", MISSING_PET, None, 2, 2),
        ("troop", 998, None, 0, 0),
        ("troop", MISSING_TROOP, None, 1, 1),
    ]
    for p in res.placeholders:
        assert (p.rows, p.users) == _usage(pg_dsn, p.kind, p.id)
    doc = res.to_json()
    assert doc["counts"] == {"troop": 2, "pet": 1, "artifact": 1}
    assert doc["placeholders"][1] == {"kind": "pet", "id": MISSING_PET, "name": None, "rows": 2, "users": 2}


GOOD_CSV = (
    "kind,id,name,meta\n"
    f'troop,{MISSING_TROOP},Storm Giant,"{{""rarity"": ""epic""}}"\n'  # replaces a placeholder
    "troop,5,troop_catalog 5,\n"  # the real row, as it is
    "troop,6,Renamed Six\n"  # differs from the real row
    'pet,40,Fresh Pet,"{""color"": ""red""}"\n'  # new
    "artifact,700,Lost Relic\n"  # replaces an unused placeholder
)


def test_import_replaces_placeholders_inserts_new_and_leaves_real_rows(
    cfg: Any, pg_dsn: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("STARFORGE_OPERATOR", "ops:carol")
    before = catalog_rows(pg_dsn)
    res = import_catalog(cfg, GOOD_CSV.encode(), source="authoritative.csv")
    assert res.counts == {
        "inserted": 1,
        "placeholders_replaced": 2,
        "updated": 0,
        "unchanged": 1,
        "skipped_existing": 1,
    }
    after = catalog_rows(pg_dsn)
    assert after[("troop", MISSING_TROOP)][:2] == ("Storm Giant", {"rarity": "epic"})
    assert after[("artifact", 700)][:2] == ("Lost Relic", {})
    assert after[("pet", 40)][:2] == ("Fresh Pet", {"color": "red"})
    assert after[("troop", 6)] == before[("troop", 6)]  # a real row is not overwritten without --update
    assert after[("troop", 5)] == before[("troop", 5)]  # unchanged: not even rewritten (same xmin)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {("troop", MISSING_TROOP), ("artifact", 700), ("pet", 40)}
    assert [(p.kind, p.id) for p in placeholders(cfg).placeholders] == [("pet", MISSING_PET), ("troop", 998)]
    assert res.skipped == [{"kind": "troop", "id": 6, "line": 4}]

    art = artifacts.read_json(res.artifact, "catalog-import")
    assert res.artifact.parent == Path(cfg.artifacts_dir) / "runbook"
    assert res.artifact.name.startswith("catalog-import-")
    assert art["file"]["sha256"] == hashlib.sha256(GOOD_CSV.encode()).hexdigest()
    assert art["counts"] == res.counts and art["operator"] == "ops:carol"
    assert art["changes"]["placeholders_replaced"] == [
        {"kind": "artifact", "id": 700, "line": 6},
        {"kind": "troop", "id": MISSING_TROOP, "line": 2},
    ]


def test_importing_the_same_file_twice_writes_nothing_the_second_time(cfg: Any, pg_dsn: str) -> None:
    import_catalog(cfg, GOOD_CSV.encode(), source="a.csv")
    first = catalog_rows(pg_dsn)
    again = import_catalog(cfg, GOOD_CSV.encode(), source="a.csv")
    assert again.counts == {
        "inserted": 0,
        "placeholders_replaced": 0,
        "updated": 0,
        "unchanged": 4,
        "skipped_existing": 1,
    }
    assert catalog_rows(pg_dsn) == first  # every row's xmin unchanged
    assert again.artifact != import_catalog(cfg, GOOD_CSV.encode(), source="a.csv").artifact  # a record each time


def test_update_overwrites_only_rows_that_differ(cfg: Any, pg_dsn: str, monkeypatch: Any) -> None:
    monkeypatch.delenv("STARFORGE_OPERATOR", raising=False)
    import_catalog(cfg, GOOD_CSV.encode(), source="a.csv")
    before = catalog_rows(pg_dsn)
    res = import_catalog(cfg, GOOD_CSV.encode(), source="a.csv", update=True)
    assert res.counts["updated"] == 1 and res.counts["unchanged"] == 4 and res.counts["skipped_existing"] == 0
    after = catalog_rows(pg_dsn)
    assert after[("troop", 6)][:2] == ("Renamed Six", {})
    assert {k for k in after if after[k] != before[k]} == {("troop", 6)}
    assert res.operator.endswith("@" + socket.gethostname())
    res = import_catalog(cfg, GOOD_CSV.encode(), source="a.csv", update=True)
    assert res.counts["updated"] == 0 and catalog_rows(pg_dsn) == after


def test_json_lines_are_read_like_csv(cfg: Any, pg_dsn: str) -> None:
    lines = [
        {"kind": "troop", "id": MISSING_TROOP, "name": "Storm Giant", "meta": {"rarity": "epic"}},
        {"kind": "pet", "id": MISSING_PET, "name": "Ember"},
        {"kind": "pet", "id": 3, "name": "pet_catalog 3", "meta": None},
    ]
    data = ("\n".join(json.dumps(x) for x in lines) + "\n\n").encode()
    res = import_catalog(cfg, data, source="-", fmt="jsonl")
    assert res.format == "jsonl" and res.source == "stdin"
    assert res.counts["placeholders_replaced"] == 2 and res.counts["unchanged"] == 1
    rows = catalog_rows(pg_dsn)
    assert rows[("pet", MISSING_PET)][:2] == ("Ember", {})


BAD_FILES = {
    "unparsable-csv": ("csv", 'troop,6,"Six\n', "line 3: not valid CSV"),
    "unknown-kind": ("csv", "dragon,5,Smaug\n", "line 3: unknown kind 'dragon'"),
    "zero-id": ("csv", "troop,0,Zero\n", "line 3: id must be a positive integer, found 0"),
    "negative-id": ("csv", "troop,-4,Minus\n", "line 3: id must be a positive integer, found -4"),
    "non-integer-id": ("csv", "troop,1.5,Half\n", "line 3: id must be a positive integer, found '1.5'"),
    "id-too-big": ("csv", "troop,2147483648,Big\n", "line 3: id 2147483648 is out of range"),
    "empty-name": ("csv", "pet,4,  \n", "line 3: empty name"),
    "meta-not-object": ("csv", 'troop,7,Seven,"[1, 2]"\n', "line 3: meta must be a JSON object, found an array"),
    "meta-not-json": ("csv", "troop,7,Seven,{oops\n", "line 3: meta is not valid JSON"),
    "fields": ("csv", "troop,7\n", "line 3: expected kind,id,name[,meta], found 2 field(s)"),
    "duplicate": ("csv", f"troop,{MISSING_TROOP},Again\n", f"line 3: duplicate troop {MISSING_TROOP} (first on line 1"),
    "jsonl-unparsable": ("jsonl", '{"kind": "troop", \n', "line 3: not valid JSON"),
    "jsonl-string-id": ("jsonl", '{"kind": "pet", "id": "5", "name": "x"}\n', "line 3: id must be a positive integer"),
    "jsonl-meta": ("jsonl", '{"kind": "pet", "id": 5, "name": "x", "meta": 3}\n', "line 3: meta must be a JSON object"),
    "jsonl-unknown-kind": ("jsonl", '{"kind": "hero", "id": 5, "name": "x"}\n', "line 3: unknown kind 'hero'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_rejected_whole_with_its_line_number(cfg: Any, pg_dsn: str, case: str) -> None:
    fmt, bad_line, message = BAD_FILES[case]
    if fmt == "csv":  # two good records first: one replaces a placeholder, one is new
        good = f"troop,{MISSING_TROOP},Storm Giant\npet,41,New Pet\n"
    else:
        good = (
            json.dumps({"kind": "troop", "id": MISSING_TROOP, "name": "Storm Giant"})
            + "\n"
            + json.dumps({"kind": "pet", "id": 41, "name": "New Pet"})
            + "\n"
        )
    before = catalog_rows(pg_dsn)
    folder = Path(cfg.artifacts_dir) / "runbook"
    existing = set(folder.glob("catalog-import-*")) if folder.exists() else set()
    with pytest.raises(UsageError) as raised:
        import_catalog(cfg, (good + bad_line + "pet,42,After\n" * (fmt == "csv")).encode(), source=f"f.{fmt}")
    text = str(raised.value)
    assert text.startswith(f"f.{fmt} {message}"), text
    assert "\n" not in text and raised.value.exit_code == 2
    assert catalog_rows(pg_dsn) == before  # nothing of the file applied
    assert (set(folder.glob("catalog-import-*")) if folder.exists() else set()) == existing


def test_the_format_comes_from_the_extension_or_the_option(cfg: Any) -> None:
    with pytest.raises(UsageError, match="give --format"):
        import_catalog(cfg, b"troop,1,x\n", source="-")
    with pytest.raises(UsageError, match="cannot tell the format"):
        import_catalog(cfg, b"troop,1,x\n", source="catalog.txt")
    with pytest.raises(UsageError, match="no records"):
        import_catalog(cfg, b"kind,id,name\n\n", source="empty.csv")
    assert import_catalog(cfg, b"troop,1,troop_catalog 1\n", source="catalog.txt", fmt="csv").counts["unchanged"] == 1


def test_cleanup_dry_run_lists_and_deletes_nothing(cfg: Any, pg_dsn: str) -> None:
    before = catalog_rows(pg_dsn)
    res = cleanup(cfg, dry_run=True)
    assert res.deleted == [{"kind": k, "id": i} for k, i in sorted(UNUSED)]
    assert [(p.kind, p.id, p.rows, p.users) for p in res.in_use] == [
        ("pet", MISSING_PET, 2, 2),
        ("troop", MISSING_TROOP, 1, 1),
    ]
    assert res.artifact is None and catalog_rows(pg_dsn) == before


def test_cleanup_deletes_only_unreferenced_placeholders(cfg: Any, pg_dsn: str) -> None:
    before = catalog_rows(pg_dsn)
    res = cleanup(cfg)
    assert res.deleted == [{"kind": k, "id": i} for k, i in sorted(UNUSED)]
    after = catalog_rows(pg_dsn)
    assert set(before) - set(after) == set(UNUSED)
    assert all(after[k] == before[k] for k in after)  # nothing else written
    assert [(p.kind, p.id) for p in placeholders(cfg).placeholders] == [("pet", MISSING_PET), ("troop", MISSING_TROOP)]
    assert orphans(pg_dsn) == []
    art = artifacts.read_json(res.artifact, "catalog-cleanup") if res.artifact else {}
    assert art["deleted"] == res.deleted and len(art["in_use"]) == 2
    assert cleanup(cfg).deleted == [] and catalog_rows(pg_dsn) == after


def _cleanup_in_thread(cfg: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["res"] = cleanup(cfg)
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def _user_id(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT id FROM users ORDER BY namecode LIMIT 1").fetchone()
    assert row is not None
    return row[0]


def _reference(conn: psycopg.Connection[Any], user_id: Any, troop_id: int) -> None:
    conn.execute(
        "INSERT INTO user_troops (user_id, troop_id, last_seen, source_snapshot_id)"
        " VALUES (%s, %s, now(), gen_random_uuid())",
        [user_id, troop_id],
    )


def test_cleanup_waits_for_a_writer_in_flight_and_keeps_what_it_references(cfg: Any, pg_dsn: str) -> None:
    """A transaction that has written a user_troops row using placeholder troop 998 but not committed: the
    DELETE's NOT EXISTS cannot see that row, so cleanup must wait for it (the user_* lock)."""
    with psycopg.connect(pg_dsn) as writer:
        _reference(writer, _user_id(writer), 998)
        thread, out = _cleanup_in_thread(cfg)
        time.sleep(0.7)
        assert thread.is_alive(), f"cleanup did not wait for the writer: {out}"
        writer.commit()
    thread.join(30)
    assert "error" not in out, out.get("error")
    assert out["res"].deleted == [{"kind": "artifact", "id": 700}]
    assert orphans(pg_dsn) == [] and ("troop", 998) in catalog_rows(pg_dsn)


def test_cleanup_waits_for_a_batch_past_its_placeholder_step(cfg: Any, pg_dsn: str) -> None:
    """An ETL batch that has run its placeholder step (etl/placeholders.sql: an INSERT into all three catalogs,
    here one that finds nothing missing, as when troop 998 already exists) but not yet merged: it writes its
    row using troop 998 only after cleanup has started. Cleanup must wait for the batch (the catalog lock)."""
    with psycopg.connect(pg_dsn) as batch:
        user_id = _user_id(batch)
        for table in ("troop_catalog", "pet_catalog", "artifact_catalog"):
            batch.execute(
                f"INSERT INTO {table} (id, name, meta) SELECT 998, NULL, '{{}}' WHERE false ON CONFLICT (id) DO NOTHING"  # type: ignore[arg-type]
            )
        thread, out = _cleanup_in_thread(cfg)
        time.sleep(0.7)
        waited = thread.is_alive()
        _reference(batch, user_id, 998)  # the merge
        batch.commit()
    thread.join(30)
    assert waited, f"cleanup did not wait for the batch: {out}"
    assert "error" not in out, out.get("error")
    assert orphans(pg_dsn) == [] and ("troop", 998) in catalog_rows(pg_dsn)
    assert out["res"].deleted == [{"kind": "artifact", "id": 700}]


def test_a_foreign_key_that_refuses_the_delete_rolls_cleanup_back(cfg: Any, pg_dsn: str) -> None:
    """A production table referencing a catalog through an FK: its references are not user_* rows, so the
    DELETE tries to remove troop 998; the FK refuses and nothing at all is deleted."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE shop_offers (troop_id integer REFERENCES troop_catalog (id))")
        conn.execute("INSERT INTO shop_offers VALUES (998)")
    before = catalog_rows(pg_dsn)
    with pytest.raises(GateFailed, match=r"foreign key \(shop_offers_troop_id_fkey\): nothing deleted"):
        cleanup(cfg)
    assert catalog_rows(pg_dsn) == before  # artifact 700 was not deleted either
    assert not list((Path(cfg.artifacts_dir) / "runbook").glob("catalog-cleanup-*"))


def test_cleanup_gives_up_within_lock_timeout_and_changes_nothing(cfg: Any, pg_dsn: str) -> None:
    """A writer that keeps a catalog locked past lock_timeout: cleanup exits 1 saying so, nothing deleted."""
    quick = cfg.replace(**{"database.lock_timeout": "300ms"})
    before = catalog_rows(pg_dsn)
    with psycopg.connect(pg_dsn) as writer:
        writer.execute("UPDATE pet_catalog SET name = name WHERE id = 1")
        t0 = time.monotonic()
        with pytest.raises(GateFailed, match=r"locked by other sessions for longer than lock_timeout \(0.3 s\)"):
            cleanup(quick)
        assert time.monotonic() - t0 < 10
        writer.rollback()
    assert catalog_rows(pg_dsn) == before
