"""Write semantics of the ETL core: newest observation wins whatever the order, re-runs write nothing,
a snapshot is applied whole or not at all, transient errors are retried (docs SNAPSHOT_CONTRACT.md)."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import (
    NORMALIZED,
    apply,
    at,
    error_set,
    errors,
    insert_snapshot,
    one,
    payload,
    rows,
    seed_catalog,
    snapshot_rows,
    state,
    xmins,
)

from starforge_backfill.etl import pipeline as pipeline_module
from starforge_backfill.etl.pipeline import (
    BatchResult,
    ConnectionHolder,
    EtlSettings,
    apply_in_transaction,
    process_batch,
)

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "reference"])

# Four observations of user A, oldest first: values change over time, items disappear from newer ones, and
# the name is only in the older ones (the newest two have an empty or null Name). User B rides along.
MINUTES = {"A0": 10, "A1": 20, "A2": 30, "A3": 40, "B0": 15, "B1": 25}


def _history(tag: str) -> dict[str, Any]:
    """The six raw payloads, labelled A0..A3 and B0..B1, for users ORDER_A_<tag> and ORDER_B_<tag>."""
    a, b = f"ORDER_A_{tag}", f"ORDER_B_{tag}"
    return {
        "A0": payload(
            a,
            "OldName",
            Level=10,
            PvpTier=1,
            Troops=[{"TroopId": 1, "Amount": 1}, {"TroopId": 2, "Amount": 5}, {"TroopId": 3, "Amount": 2, "X": 1}],
            Pets=[{"PetId": 10, "Level": 1, "XP": 100}],
            Artifacts=[{"ArtifactId": 20, "Level": 1}],
            EquippedPet={"PetId": 10, "Level": 1},
            Guild={"Name": "First Guild"},
        ),
        # double-encoded: always through the reference path, mixed with fast-path neighbours
        "A1": json.dumps(
            payload(
                a,
                "MidName",
                Level=11,
                Troops={"1": {"Amount": 2}, "2": {"Amount": 6, "Level": 2}},
                Pets=[{"PetId": 10, "Level": 3, "XP": 300}, {"PetId": 11, "Secret": "s3cr3t-value"}],
                Artifacts=[{"ArtifactId": 20, "Level": 2}],
                EquippedPet=11,
            )
        ),
        "A2": payload(
            a,
            "",
            Level=12,
            Troops=[{"TroopId": 1, "Amount": 3}, {"TroopId": 4, "Amount": 7}],
            Pets=[{"PetId": 11, "Level": 2}],
            Guild={"Name": "Third Guild"},
        ),
        "A3": payload(a, None, Level=13, PvpTier=4, Troops=[{"TroopId": 2, "Amount": 9, "Level": 3}]),
        "B0": payload(b, "Bee", Level=1, Troops=[{"TroopId": 1, "Amount": 4}]),
        "B1": payload(b, "Bee2", Level=2, Troops=[{"TroopId": 5, "Amount": 1}], Pets={"10": {}}),
    }


def _load(conn: psycopg.Connection, tag: str) -> dict[str, uuid.UUID]:
    """Insert one copy of the history for users *_<tag>; returns {label: snapshot id}."""
    with conn.transaction():
        return {
            label: insert_snapshot(conn, raw, created_at=at(MINUTES[label])) for label, raw in _history(tag).items()
        }


def _apply_rounds(conn: psycopg.Connection, plans: list[list[list[uuid.UUID]]], settings: EtlSettings) -> None:
    """Apply several independent plans (lists of batches, each for its own users) side by side: round k
    applies the k-th batch of every plan in one transaction, which is the same, user by user, as applying
    each plan alone (users never share rows)."""
    for k in range(max(len(p) for p in plans)):
        batch = [sid for plan in plans if k < len(plan) for sid in plan[k]]
        res = apply(conn, batch, settings)
        assert (res.applied, res.failed) == (len(batch), 0), res.failures


def _user_state(full: dict[str, list[tuple]], tag: str, labels: dict[uuid.UUID, str]) -> dict[str, list[tuple]]:
    """The normalized rows of users *_<tag>, with the tag and snapshot ids replaced by neutral labels."""

    def neutral(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return labels.get(value, value)
        if isinstance(value, str) and value.endswith(f"_{tag}"):
            return value[: -len(tag) - 1]
        return value

    return {
        table: [tuple(map(neutral, r)) for r in table_rows if r[0].endswith(f"_{tag}")]
        for table, table_rows in full.items()
        if table != "catalogs"
    }


def _check_oldest_first(s: dict[str, list[tuple]]) -> None:
    assert s["users"] == [("ORDER_A", "MidName"), ("ORDER_B", "Bee2")]
    troops = {(r[0], r[1]): (r[2], r[3], r[7], r[8], r[9]) for r in s["user_troops"]}
    assert troops == {
        ("ORDER_A", 1): (3, 1, {}, at(30), "A2"),
        ("ORDER_A", 2): (9, 3, {}, at(40), "A3"),
        ("ORDER_A", 3): (2, 1, {"X": 1}, at(10), "A0"),  # missing from newer snapshots: kept
        ("ORDER_A", 4): (7, 1, {}, at(30), "A2"),
        ("ORDER_B", 1): (4, 1, {}, at(15), "B0"),
        ("ORDER_B", 5): (1, 1, {}, at(25), "B1"),
    }
    pets = {(r[0], r[1]): (r[3], r[4], r[8], r[10]) for r in s["user_pets"]}
    assert pets == {
        ("ORDER_A", 10): (3, 300, {}, "A1"),
        ("ORDER_A", 11): (2, 0, {}, "A2"),
        ("ORDER_B", 10): (1, 0, {}, "B1"),
    }
    assert [(r[0], r[1], r[2], r[6]) for r in s["user_artifacts"]] == [("ORDER_A", 20, 2, "A1")]
    summary = {r[0]: r[1:] for r in s["user_profile_summary"]}
    namecode, username, level, top, pet, tier, guild_id, last_seen, extra, source = summary["ORDER_A"]
    # username is users.username: from the newest snapshot that has a name, not from the summary's own
    assert (namecode, username, level, tier, guild_id, last_seen, source) == (
        "ORDER_A",
        "MidName",
        13,
        4,
        None,
        at(40),
        "A3",
    )
    assert top == [{"troop_id": 2, "amount": 9, "level": 3}]
    assert (pet, extra) == (None, {})
    assert summary["ORDER_B"][1:3] == ("Bee2", 2)


@PATHS
def test_newest_observation_wins_in_any_order_and_batching(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    settings = EtlSettings(fast_path=fast_path)
    ids = {"base": _load(pg_conn, "base")}
    oldest_first = sorted(ids["base"], key=MINUTES.__getitem__)
    plans = {"base": [[ids["base"][label]] for label in oldest_first]}
    modes = {}
    for i, perm in enumerate(itertools.permutations(["A0", "A1", "A2", "A3"])):
        tag = f"p{i:02d}"
        ids[tag] = _load(pg_conn, tag)
        # user B's snapshots ride along, newest first, at a position that moves with the permutation
        order = list(perm)
        order[i % 5 : i % 5] = ["B1", "B0"]
        sids = [ids[tag][label] for label in order]
        modes[tag] = ("one per batch", "one batch", "two batches")[i % 3]
        plans[tag] = {
            "one per batch": [[sid] for sid in sids],
            "one batch": [sids],
            "two batches": [sids[:3], sids[3:]],
        }[modes[tag]]
        modes[tag] += f" {order}"
    _apply_rounds(pg_conn, list(plans.values()), settings)

    full = state(pg_conn)
    views = {tag: _user_state(full, tag, {sid: label for label, sid in ids[tag].items()}) for tag in ids}
    expected = views.pop("base")
    _check_oldest_first(expected)
    mismatches = [
        f"{modes[tag]}: " + ", ".join(f"{t}: {got[t]} != {expected[t]}" for t in got if got[t] != expected[t])
        for tag, got in views.items()
        if got != expected
    ]
    assert not mismatches, "\n".join(mismatches)


@PATHS
def test_ties_in_created_at_resolve_the_same_whatever_the_order(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    scenarios = {
        "low-then-high": lambda lo, hi: [[lo], [hi]],
        "high-then-low": lambda lo, hi: [[hi], [lo]],
        "one batch low first": lambda lo, hi: [[lo, hi]],
        "one batch high first": lambda lo, hi: [[hi, lo]],
    }
    plans, labels = [], {}
    for n, plan in enumerate(scenarios.values()):
        low, high = uuid.UUID(int=n + 1, version=4), uuid.UUID(int=2**120 + n, version=4)
        assert low < high
        tag = f"t{n}"
        insert_snapshot(
            pg_conn,
            payload(f"TIE_{tag}", "LowName", Level=1, Troops=[{"TroopId": 1, "Amount": 1}, {"TroopId": 2}]),
            created_at=at(5),
            id=low,
        )
        insert_snapshot(
            pg_conn,
            payload(f"TIE_{tag}", "HighName", Level=2, Troops=[{"TroopId": 1, "Amount": 2}], Pets=[{"PetId": 3}]),
            created_at=at(5),
            id=high,
        )
        plans.append(plan(low, high))
        labels[tag] = {low: "low", high: "high"}
    _apply_rounds(pg_conn, plans, EtlSettings(fast_path=fast_path))
    full = state(pg_conn)
    results = {label: _user_state(full, f"t{n}", labels[f"t{n}"]) for n, label in enumerate(scenarios)}
    first = results["low-then-high"]
    assert {k: v for k, v in results.items() if v != first} == {}
    # one rule, applied everywhere (the higher snapshot id wins a tie): rows both snapshots have come from it
    assert first["users"] == [("TIE", "HighName")]
    assert {r[1]: r[-1] for r in first["user_troops"]} == {1: "high", 2: "low"}
    assert [(r[3], r[-1]) for r in first["user_profile_summary"]] == [(2, "high")]


# ---------------------------------------------------------------------------------------------------------
# Idempotence

IDEMPOTENT_TABLES = (*NORMALIZED, "hero_snapshots", "backfill_username_seen", "troop_catalog", "pet_catalog")


def _zero(res: BatchResult) -> dict[str, int]:
    return {k: v for k, v in res.rows_written.items() if v}


@PATHS
def test_re_applying_writes_nothing(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    settings = EtlSettings(fast_path=fast_path)
    loaded = _load(pg_conn, "idem")
    # one snapshot that takes the reference path on any path: sensitive keys and a keyed section
    extra = insert_snapshot(
        pg_conn,
        payload("IDEM_0001", "Idem", Troops={"8": {"AuthCode": "x", "Info": {"a": [1, {"b": None}]}}}, Level="3"),
        created_at=at(50),
    )
    everything = [*loaded.values(), extra]
    first = apply(pg_conn, everything, settings)
    assert first.applied == len(everything)
    assert sum(first.rows_written.values()) > 0
    before = xmins(pg_conn, IDEMPOTENT_TABLES)
    tables_before = state(pg_conn)

    again = apply(pg_conn, everything, settings)
    assert again.applied == len(everything)
    assert _zero(again) == {}
    assert set(again.rows_written) >= set(NORMALIZED) - {"users"}
    assert again.placeholders == []
    one_by_one = [apply(pg_conn, [sid], settings) for sid in reversed(everything)]
    assert [_zero(r) for r in one_by_one] == [{}] * len(everything)

    assert xmins(pg_conn, IDEMPOTENT_TABLES) == before
    assert state(pg_conn) == tables_before
    assert errors(pg_conn) == []


# ---------------------------------------------------------------------------------------------------------
# Atomicity and retries


def _holder(dsn: str) -> ConnectionHolder:
    return ConnectionHolder(lambda: psycopg.connect(dsn, autocommit=True))


def _bookkeeping_table(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE test_bookkeeping (key text, applied int, failed int)")


def _record(conn: psycopg.Connection, res: BatchResult, key: Any) -> None:
    conn.execute("INSERT INTO test_bookkeeping VALUES (%s, %s, %s)", [str(key), res.applied, res.failed])


@PATHS
def test_one_bad_and_one_failing_snapshot_do_not_fail_their_neighbours(
    pg_conn: psycopg.Connection, pg_dsn: str, fast_path: bool, tmp_path: Path
) -> None:
    pg_conn.execute("ALTER TABLE user_troops ADD CONSTRAINT t_amount CHECK (amount < 1000000)")
    _bookkeeping_table(pg_conn)
    good1 = insert_snapshot(
        pg_conn, payload("ATOM_GOOD1", "G1", Troops=[{"TroopId": 1, "Amount": 5}]), created_at=at(1)
    )
    invalid = insert_snapshot(
        pg_conn, payload("ATOM_INVALID", Troops=[{"TroopId": 2, "Amount": "many"}]), created_at=at(2)
    )
    db_error = insert_snapshot(
        pg_conn,
        payload(
            "ATOM_DBERR",
            "Doomed",
            Level=4,
            Troops=[{"TroopId": 3, "Amount": 2_000_000}, {"TroopId": 1, "Amount": 1}],
            Pets=[{"PetId": 30}],
            Artifacts=[{"ArtifactId": 31}],
        ),
        created_at=at(3),
    )
    good2 = insert_snapshot(
        pg_conn,
        payload("ATOM_GOOD2", "G2", Troops=[{"TroopId": 1, "Amount": 7}], Pets=[{"PetId": 4}]),
        created_at=at(4),
    )
    items = [(good1, "k1"), (invalid, "k2"), (db_error, "k3"), (good2, "k4")]
    holder = _holder(pg_dsn)
    try:
        res = process_batch(
            holder,
            items,
            EtlSettings(fast_path=fast_path, quarantine_dir=tmp_path),
            bookkeeping=_record,
            retry={"max_attempts": 2, "wait_initial_s": 0.001, "wait_max_s": 0.01},
        )
    finally:
        holder.close()

    assert res.fallback is True
    assert (res.applied, res.failed) == (2, 2)
    assert res.errors_by_type == {"VALIDATION_ERROR": 1, "DB_ERROR": 1}
    assert error_set(pg_conn) == {(invalid, "VALIDATION_ERROR"), (db_error, "DB_ERROR")}
    err = one(pg_conn, "SELECT details, message FROM etl_errors WHERE snapshot_id = %s", [db_error])
    assert err["details"]["sqlstate"] == "23514"
    for sid in (invalid, db_error):
        snap = one(
            pg_conn, "SELECT error_count, processed_at, user_id, last_error FROM hero_snapshots WHERE id = %s", [sid]
        )
        assert (snap["error_count"], snap["processed_at"], snap["user_id"]) == (1, None, None)
        assert snap["last_error"]["error_type"] in ("VALIDATION_ERROR", "DB_ERROR")
        assert snapshot_rows(pg_conn, sid) == dict.fromkeys(NORMALIZED[1:], 0)
    assert (tmp_path / f"{db_error}.json").exists()
    # nothing of the failing snapshots: no users, no rows, no placeholders for their ids
    s = state(pg_conn)
    assert s["users"] == [("ATOM_GOOD1", "G1"), ("ATOM_GOOD2", "G2")]
    assert {(r[0], r[1]) for r in s["catalogs"]} == {("troop", 1), ("pet", 4)}
    assert {(r[0], r[1], r[2]) for r in s["user_troops"]} == {("ATOM_GOOD1", 1, 5), ("ATOM_GOOD2", 1, 7)}
    for sid in (good1, good2):
        assert one(pg_conn, "SELECT processed_at FROM hero_snapshots WHERE id = %s", [sid])["processed_at"]
    # bookkeeping ran in each committed transaction only: once per snapshot, never for the failed whole batch
    book = rows(pg_conn, "SELECT key, applied, failed FROM test_bookkeeping ORDER BY key")
    assert [tuple(r.values()) for r in book] == [("k1", 1, 0), ("k2", 0, 1), ("k3", 0, 1), ("k4", 1, 0)]


def test_a_transient_error_is_retried_and_not_counted(pg_conn: psycopg.Connection, pg_dsn: str) -> None:
    _bookkeeping_table(pg_conn)
    ids = [
        insert_snapshot(
            pg_conn, payload(f"RETRY_{i}", f"R{i}", Troops=[{"TroopId": i + 1, "Amount": i}]), created_at=at(i)
        )
        for i in range(3)
    ]
    calls: list[int] = []
    retries: list[tuple[str, int]] = []

    def flaky(conn: psycopg.Connection, res: BatchResult, key: Any) -> None:
        calls.append(res.applied)
        _record(conn, res, key)
        if len(calls) == 1:  # a real server-side serialization failure, first attempt only
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")

    holder = _holder(pg_dsn)
    try:
        res = process_batch(
            holder,
            [(sid, i) for i, sid in enumerate(ids)],
            EtlSettings(),
            bookkeeping=flaky,
            retry={"max_attempts": 3, "wait_initial_s": 0.001, "wait_max_s": 0.01},
            on_retry=lambda exc, n: retries.append((type(exc).__name__, n)),
        )
    finally:
        holder.close()
    assert retries == [("SerializationFailure", 1)]
    assert calls == [3, 3]
    assert (res.applied, res.failed, res.fallback) == (3, 0, False)
    assert errors(pg_conn) == []
    assert [tuple(r.values()) for r in rows(pg_conn, "SELECT key, applied, failed FROM test_bookkeeping")] == [
        ("2", 3, 0)
    ]
    assert rows(pg_conn, "SELECT error_count FROM hero_snapshots WHERE error_count <> 0 OR processed_at IS NULL") == []
    assert [r[0] for r in state(pg_conn)["users"]] == ["RETRY_0", "RETRY_1", "RETRY_2"]


def test_a_transient_error_that_outlasts_the_retries_is_raised_and_writes_nothing(
    pg_conn: psycopg.Connection, pg_dsn: str
) -> None:
    sid = insert_snapshot(pg_conn, payload("RETRY_OUT", "R", Troops=[{"TroopId": 1}]))

    def always(conn: psycopg.Connection, res: BatchResult, key: Any) -> None:
        conn.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40P01'; END $$")

    holder = _holder(pg_dsn)
    try:
        with pytest.raises(psycopg.errors.DeadlockDetected):
            process_batch(
                holder,
                [(sid, 0)],
                EtlSettings(),
                bookkeeping=always,
                retry={"max_attempts": 2, "wait_initial_s": 0.001},
            )
    finally:
        holder.close()
    assert state(pg_conn)["users"] == []
    assert one(pg_conn, "SELECT processed_at, error_count FROM hero_snapshots") == {
        "processed_at": None,
        "error_count": 0,
    }


def test_a_row_inserted_concurrently_falls_back_to_upserts(pg_conn: psycopg.Connection, pg_dsn: str) -> None:
    # The entity writes use MERGE, which has no ON CONFLICT: when another worker inserts the same
    # (user, troop) row between this MERGE's snapshot and its insert, the insert fails with unique_violation.
    # The batch must then apply through the upsert path in the same transaction, newest observation winning.
    known = insert_snapshot(pg_conn, payload("RACE_USER", Troops=[{"TroopId": 9, "Amount": 1}]), created_at=at(1))
    apply(pg_conn, [known])  # the user exists and is committed: the two workers below do not meet on users
    seed_catalog(pg_conn, troops=[1])  # nor on a placeholder catalog row: they first meet in the MERGE
    older = insert_snapshot(pg_conn, payload("RACE_USER", Troops=[{"TroopId": 1, "Amount": 10}]), created_at=at(2))
    newer = insert_snapshot(pg_conn, payload("RACE_USER", Troops=[{"TroopId": 1, "Amount": 20}]), created_at=at(3))

    outcome: dict[str, Any] = {}
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        tx = other.transaction()
        tx.__enter__()
        first = apply_in_transaction(other, [older], EtlSettings())  # MERGE inserted (RACE_USER, 1), uncommitted

        def second() -> None:
            try:
                outcome["result"] = apply(pg_conn, [newer])  # its MERGE waits on the uncommitted row
            except BaseException as exc:  # re-raised below
                outcome["error"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        lock_waits = (
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        for _ in range(200):  # until the second worker blocks on the uncommitted row
            waited = one(other, lock_waits)
            if waited["n"]:
                break
            thread.join(0.05)
        assert waited["n"] == 1, "the second worker never waited on the first one's row"
        tx.__exit__(None, None, None)  # commit: the waiting MERGE now meets a duplicate key
        thread.join(10)

    assert "error" not in outcome, outcome.get("error")
    assert (first.applied, outcome["result"].applied, outcome["result"].failed) == (1, 1, 0)
    assert outcome["result"].rows_written["user_troops"] == 1
    troop = one(pg_conn, "SELECT amount, source_snapshot_id FROM user_troops WHERE troop_id = 1")
    assert (troop["amount"], troop["source_snapshot_id"]) == (20, newer)
    assert errors(pg_conn) == []


def test_staging_gets_its_temp_buffers_unless_the_session_used_temp_tables(pg_dsn: str) -> None:
    # temp_buffers can only change before a session first uses a temporary table: a fresh session gets the
    # room for its staging tables; one that used a temp table already keeps its setting and still applies.
    with psycopg.connect(pg_dsn, autocommit=True) as fresh, psycopg.connect(pg_dsn, autocommit=True) as used:
        used.execute("CREATE TEMP TABLE scratch (a int)")
        used.execute("INSERT INTO scratch VALUES (1)")
        before = used.execute("SHOW temp_buffers").fetchone()
        for conn, namecode in ((fresh, "TB_FRESH"), (used, "TB_USED")):
            sid = insert_snapshot(conn, payload(namecode, Troops=[{"TroopId": 1, "Amount": 3}]))
            assert apply(conn, [sid]).applied == 1
        assert fresh.execute("SHOW temp_buffers").fetchone() == ("128MB",)
        assert used.execute("SHOW temp_buffers").fetchone() == before
        got = rows(fresh, "SELECT u.namecode, t.amount FROM user_troops t JOIN users u ON u.id = t.user_id ORDER BY 1")
        assert [(r["namecode"], r["amount"]) for r in got] == [("TB_FRESH", 3), ("TB_USED", 3)]


def test_a_batch_runs_without_jit(pg_conn: psycopg.Connection) -> None:
    # The staging statement's row estimates (jsonb functions, recursive CTEs) are guesses that can cross
    # jit_above_cost: compiling then took seconds for a statement that runs in a fraction of one.
    pg_conn.execute("SET jit_above_cost = 0")  # a server that would JIT everything
    sid = insert_snapshot(pg_conn, payload("JIT_OFF", Troops=[{"TroopId": 1, "Meta": {"token": "x"}}]))
    with pg_conn.transaction():
        res = apply_in_transaction(pg_conn, [sid], EtlSettings())
        assert pg_conn.execute("SELECT current_setting('jit')").fetchone() == ("off",)
    assert res.applied == 1
    assert one(pg_conn, "SELECT extra FROM user_troops")["extra"] == {"Meta": {}}


def test_a_non_object_element_fails_only_its_snapshot_and_the_batch_is_read_element_by_element(
    pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # jsonb_populate_recordset refuses an array holding a non-object: the batch is staged again element by
    # element, the snapshot with such an element fails validation, and its neighbour in the batch is applied
    monkeypatch.setattr(pipeline_module, "RECORDSET_BACKOFF", 0)
    good = insert_snapshot(
        pg_conn,
        payload("SECTIONS_GOOD", Troops=[{"TroopId": 1, "Amount": 3, "X": {"y": 1}}], Pets=[{"PetId": 2}]),
        created_at=at(1),
    )
    bad = insert_snapshot(
        pg_conn, payload("SECTIONS_BAD", Troops=[{"TroopId": 1, "Amount": 4}], Pets=[{"PetId": 2}, 7]), created_at=at(2)
    )
    res = apply(pg_conn, [good, bad])
    assert (res.applied, res.failed, res.element_by_element) == (1, 1, 1)
    assert error_set(pg_conn) == {(bad, "VALIDATION_ERROR")}
    s = state(pg_conn)
    assert s["users"] == [("SECTIONS_GOOD", None)]
    assert [(r[0], r[1], r[2]) for r in s["user_troops"]] == [("SECTIONS_GOOD", 1, 3)]
    assert one(pg_conn, "SELECT extra FROM user_troops")["extra"] == {"X": {"y": 1}}
    assert [r[:2] for r in s["user_pets"]] == [("SECTIONS_GOOD", 2)]

    # a batch without such an element is read with one call per section, and to the same rows
    again = insert_snapshot(
        pg_conn, payload("SECTIONS_GOOD", Troops=[{"TroopId": 1, "Amount": 5, "X": {"y": 2}}]), created_at=at(3)
    )
    res = apply(pg_conn, [again])
    assert (res.applied, res.element_by_element) == (1, 0)
    assert one(pg_conn, "SELECT amount, extra FROM user_troops") == {"amount": 5, "extra": {"X": {"y": 2}}}


def test_after_a_fallback_a_connection_reads_element_by_element_for_a_while(
    pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "RECORDSET_BACKOFF", 2)
    dirty = insert_snapshot(pg_conn, payload("BACKOFF_A", Troops=[{"TroopId": 1}, None]), created_at=at(1))
    clean = [
        insert_snapshot(pg_conn, payload("BACKOFF_B", Troops=[{"TroopId": 2, "Amount": i}]), created_at=at(2 + i))
        for i in range(4)
    ]
    assert apply(pg_conn, [dirty]).element_by_element == 1  # tried, refused, staged element by element
    # the next two batches skip the attempt; the one after tries again, and succeeds
    assert [apply(pg_conn, [sid]).element_by_element for sid in clean] == [1, 1, 0, 0]
    assert one(pg_conn, "SELECT amount FROM user_troops WHERE troop_id = 2")["amount"] == 3
    assert error_set(pg_conn) == {(dirty, "VALIDATION_ERROR")}
