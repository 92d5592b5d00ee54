"""The one ETL core every path shares: apply a batch of snapshots per the snapshot contract.

Fast path: `sql/etl/stage.sql` parses the whole batch server-side (the payload never leaves PostgreSQL)
into per-connection staging tables and flags each snapshot it can apply exactly; `sql/etl/screen.sql` then
removes sensitive keys from the staged rows. Contract v2's real shapes (the envelope, keyed sections,
NameCode/Name inside ProfileData, GuildName) are staged there too. Every flagged snapshot (malformed, an
API error body, double-encoded, an odd integer form, an id missing under policy `fail`, ...) goes through
the pure-Python reference (`etl.contract`): a failure is recorded, a success is re-staged as its canonical
payload. The same merge statements then write all of them: newest observation wins, nothing is written
twice. A batch that fails as a whole is retried snapshot by snapshot, so one bad snapshot cannot fail its
neighbours. This module imports neither click nor rich.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from starforge_backfill import artifacts, templates
from starforge_backfill.db import is_transient, retrying, session_limits
from starforge_backfill.errors import EtlError
from starforge_backfill.etl import contract, events
from starforge_backfill.logs import detail_level

log = logging.getLogger("starforge_backfill.pipeline")

TABLES = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary")
ENTITY_TABLES = (("troop", "user_troops"), ("pet", "user_pets"), ("artifact", "user_artifacts"))
_DETAILS_MAX = 8000


@dataclasses.dataclass(frozen=True)
class EtlSettings:
    """How the core applies snapshots (plain values: the core knows nothing of config files)."""

    catalog_policy: str = "placeholder"
    fast_path: bool = True
    quarantine_dir: Path | None = None
    job_id: str | None = None
    work_mem: str = "64MB"
    temp_buffers: str = "128MB"
    events: bool = True  # write etl_events rows (etl/events.py) in each batch's transaction
    events_notify: bool = False  # and one pg_notify per batch


@dataclasses.dataclass(frozen=True)
class SnapshotFailure:
    """One snapshot that could not be applied."""

    snapshot_id: uuid.UUID
    error_type: str
    message: str
    details: dict[str, Any]


@dataclasses.dataclass
class BatchResult:
    """What applying a batch did."""

    snapshots: int = 0
    applied: int = 0
    failed: int = 0
    reference_path: int = 0
    fallback: bool = False
    element_by_element: int = 0  # batches staged element by element (see _stage)
    errors_by_type: Counter[str] = dataclasses.field(default_factory=Counter)
    rows_written: Counter[str] = dataclasses.field(default_factory=Counter)
    placeholders: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    failures: list[SnapshotFailure] = dataclasses.field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        """Accumulate another result into this one."""
        self.snapshots += other.snapshots
        self.applied += other.applied
        self.failed += other.failed
        self.reference_path += other.reference_path
        self.element_by_element += other.element_by_element
        self.fallback = self.fallback or other.fallback
        self.errors_by_type.update(other.errors_by_type)
        self.rows_written.update(other.rows_written)
        self.placeholders.extend(other.placeholders)
        self.failures.extend(other.failures)

    def fail(self, failure: SnapshotFailure) -> None:
        """Count one failed snapshot."""
        self.failed += 1
        self.errors_by_type[failure.error_type] += 1
        self.failures.append(failure)


def apply_in_transaction(conn: psycopg.Connection[Any], ids: Sequence[uuid.UUID], settings: EtlSettings) -> BatchResult:
    """Apply snapshots `ids` inside the caller's open transaction, with their etl_events rows; raises on
    database errors."""
    started = time.perf_counter()
    result = BatchResult(snapshots=len(ids))
    if not ids:
        return result
    _stage_batch(conn, list(ids), settings, result)
    templates.execute(conn, "etl/users.sql", None, catalog_policy=settings.catalog_policy)
    templates.execute(conn, "etl/usernames.sql", None, catalog_policy=settings.catalog_policy)
    if settings.catalog_policy == "placeholder":
        result.placeholders.extend(
            (k, int(i))
            for k, i in templates.execute(conn, "etl/placeholders.sql", None, catalog_policy=settings.catalog_policy)
        )
    entity_rows = _merge_entities(conn, settings)
    cur = templates.execute(
        conn, "etl/merge.sql", None, catalog_policy=settings.catalog_policy, upsert_entities=entity_rows is None
    )
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    counts = dict(zip([c.name for c in cur.description], row, strict=True))
    result.applied = int(counts.pop("applied"))
    counts.pop("hero_snapshots", None)
    result.rows_written.update({k: int(v) for k, v in counts.items()})
    result.rows_written.update(entity_rows or {})
    templates.execute(conn, "etl/sync_usernames.sql", None, catalog_policy=settings.catalog_policy)
    _emit_events(conn, result, settings, started)
    return result


def _emit_events(
    conn: psycopg.Connection[Any], result: BatchResult, settings: EtlSettings, started: float, *, staged: bool = True
) -> None:
    """The batch's etl_events rows, in its transaction (etl/events.py), unless events are off."""
    if settings.events:
        events.emit(
            conn,
            applied=result.applied,
            failures=[(f.snapshot_id, f.error_type) for f in result.failures],
            job_id=settings.job_id,
            started=started,
            notify=settings.events_notify,
            staged=staged,
        )


def _stage_batch(
    conn: psycopg.Connection[Any],
    id_list: list[uuid.UUID],
    settings: EtlSettings,
    result: BatchResult,
    *,
    superseded: bool | None = None,
    record: bool = True,
) -> None:
    """Stage, screen and flag the batch set-based; the flagged snapshots go through the reference path."""
    _session_settings(conn, settings)
    templates.execute(conn, "etl/stage_tables.sql", None, catalog_policy=settings.catalog_policy)
    if settings.fast_path:
        _stage(conn, id_list, settings, result, superseded=superseded)
        templates.execute(conn, "etl/screen.sql", None, catalog_policy=settings.catalog_policy)
        flagged = {
            row[0] for row in templates.execute(conn, "etl/flag.sql", None, catalog_policy=settings.catalog_policy)
        }
        if flagged:
            templates.execute(
                conn, "etl/unstage.sql", catalog_policy=settings.catalog_policy, params={"ids": list(flagged)}
            )
    else:
        flagged = set(id_list)
    if flagged:
        ref = [i for i in id_list if i in flagged]
        _reference_path(conn, ref, settings, result, superseded=superseded is not False, record=record)


def stage_exact(conn: psycopg.Connection[Any], ids: Sequence[uuid.UUID], settings: EtlSettings) -> BatchResult:
    """Stage snapshots exactly as `apply_in_transaction` does (the same stage, screen and flag statements, the
    same reference path for the flagged ones), writing nothing but the staging tables: every element is
    staged (none is skipped as superseded, since that reads the tables being checked), and a snapshot the
    contract rejects is only listed in the result's `failures` (no etl_errors row, no quarantine copy).
    For `verify --full`, inside the caller's open transaction; the staged rows go at its commit."""
    result = BatchResult(snapshots=len(ids))
    if ids:
        _stage_batch(conn, list(ids), settings, result, superseded=False, record=False)
    return result


# After a batch had to be staged again element by element, a connection stages this many batches element by
# element before it tries jsonb_populate_recordset again: where such elements are common, a failed attempt
# (up to a whole stage statement of work) is paid once per this many batches, not for every batch.
RECORDSET_BACKOFF = 8
_recordset_skips: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()


# Superseded elements (stage.sql) are found with a hashed `IN` over the rows of the batch's users that hold
# newer observations. PostgreSQL hashes it only when its estimate of that set fits in work_mem (64MB here)
# times hash_mem_multiplier (1 to 2); otherwise it scans the set once per element, which on a big batch
# never ends. The estimate is users x rows per user x 1/3 (the planner's guess for the row comparison) x
# ~48 bytes: with up to 1,000 users of ~2,000 rows each, 32MB. A bigger batch (batch_size allows 10,000
# small snapshots) is staged without the lookup, in full, as before.
SUPERSEDED_MAX_BATCH = 1000


def _stage(
    conn: psycopg.Connection[Any],
    ids: list[uuid.UUID],
    settings: EtlSettings,
    result: BatchResult,
    *,
    superseded: bool | None = None,
) -> None:
    """Stage the batch from the table, reading each array section with one jsonb_populate_recordset call
    (cheaper than a jsonb_to_record per element), in a savepoint: that function raises
    invalid_parameter_value when an array holds a non-object element, and the batch is then staged element
    by element, which never raises (and flags that snapshot, as the contract rejects such an element)."""
    if superseded is None:
        superseded = len(ids) <= SUPERSEDED_MAX_BATCH
    skips = _recordset_skips.get(conn, 0)
    if skips:
        _recordset_skips[conn] = skips - 1
    else:
        try:
            with conn.transaction():
                templates.execute(
                    conn,
                    "etl/stage.sql",
                    {"ids": ids},
                    catalog_policy=settings.catalog_policy,
                    source="table",
                    elements="recordset",
                    superseded=superseded,
                )
            return
        except psycopg.errors.InvalidParameterValue:
            log.debug("an array section holds a non-object element: staging this batch element by element")
            _recordset_skips[conn] = RECORDSET_BACKOFF
    result.element_by_element += 1
    templates.execute(
        conn,
        "etl/stage.sql",
        catalog_policy=settings.catalog_policy,
        source="table",
        elements="each",
        superseded=superseded,
        params={"ids": ids},
    )


def _merge_entities(conn: psycopg.Connection[Any], settings: EtlSettings) -> dict[str, int] | None:
    """Write the staged entity rows with MERGE (rows written per table), in a savepoint. None when another
    worker inserted one of the same rows meanwhile (MERGE has no ON CONFLICT): the savepoint is rolled back
    and merge.sql writes them as upserts instead."""
    written: dict[str, int] = {}
    # The MERGEs plan with random_page_cost at most 1.1 (the server's own value when lower), set locally and
    # put back right after: at the default 4 the planner hashed the batch and scanned the whole target table
    # per batch once it held ~100k to ~1.1M rows, where a batch's index probes are 5x faster; for a batch that
    # touches much of a small table it still hashes (bench/README.md, "Issue 18 part 3").
    row = conn.execute(
        "SELECT current_setting('random_page_cost'),"
        " set_config('random_page_cost', least(current_setting('random_page_cost')::float8, 1.1)::text, true)"
    ).fetchone()
    concurrent = False
    try:
        with conn.transaction():
            for entity, table in ENTITY_TABLES:
                cur = templates.execute(
                    conn, "etl/merge_entity.sql", None, catalog_policy=settings.catalog_policy, entity=entity
                )
                written[table] = max(cur.rowcount, 0)
    except psycopg.errors.UniqueViolation:
        log.debug("MERGE met a row inserted concurrently: upserting this batch instead")
        concurrent = True
    conn.execute("SELECT set_config('random_page_cost', %s, true)", [row[0] if row else "4"])
    return None if concurrent else written


def _session_settings(conn: psycopg.Connection[Any], settings: EtlSettings) -> None:
    """work_mem, no JIT and the connection's statement and lock timeouts for this transaction (set locally:
    behind PgBouncer the connection's own startup settings never reached the server, and a transaction is
    the one unit that stays on one server connection); on a session's first batch, room for its staging
    tables.

    JIT: the statements are large and their row estimates (jsonb functions, recursive CTEs) are guesses; once
    an estimate crossed jit_above_cost, compiling took seconds for a statement that runs in a fraction of one.

    temp_buffers (default 8MB) caps a session's buffers for temporary tables: a batch stages more than that,
    and the overflow went through the kernel (pwrite, then pread in the merge). It can only change before
    the session first touches a temporary table, hence the savepoint: if something else did, keep going."""
    statement_timeout, lock_timeout = session_limits(conn)
    row = conn.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true),"
        " to_regclass('pg_temp.sf_stage_snap') IS NULL,"
        " set_config('statement_timeout', coalesce(%s, current_setting('statement_timeout')), true),"
        " set_config('lock_timeout', coalesce(%s, current_setting('lock_timeout')), true)",
        [settings.work_mem, statement_timeout, lock_timeout],
    ).fetchone()
    if row is not None and row[2]:
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('temp_buffers', %s, false)", [settings.temp_buffers])
        except psycopg.errors.InvalidParameterValue:
            log.debug("temp_buffers left as is: this session used temporary tables already")


def _reference_path(
    conn: psycopg.Connection[Any],
    ids: list[uuid.UUID],
    settings: EtlSettings,
    result: BatchResult,
    *,
    superseded: bool = True,
    record: bool = True,
) -> None:
    """Run flagged snapshots through the Python reference; stage the good ones, record the bad ones (with
    `record` false, only count them in `result`)."""
    fail = record_failure if record else _count_failure
    result.reference_path += len(ids)
    payloads: dict[str, Any] = {}
    for sid in ids:
        row = templates.execute(
            conn, "etl/fetch_raw.sql", catalog_policy=settings.catalog_policy, params={"snapshot_id": sid}
        ).fetchone()
        if row is None:  # deleted since the batch was chosen
            continue
        raw_text, namecode, _created = row
        try:
            snap = contract.normalize(contract.decode_exact(raw_text), namecode)
            if settings.catalog_policy == "fail":
                _check_catalogs(conn, snap, settings)
        except EtlError as err:
            fail(conn, sid, err, settings, result, raw_text=raw_text)
            continue
        payloads[str(sid)] = snap.to_canonical_payload()
    if not payloads:
        return
    staged = [uuid.UUID(k) for k in payloads]
    templates.execute(
        conn,
        "etl/stage.sql",
        {"ids": staged, "payloads": Jsonb(payloads, dumps=_dumps_exact)},
        catalog_policy=settings.catalog_policy,
        source="params",
        elements="each",
        superseded=superseded,
    )
    disagree = [row[0] for row in templates.execute(conn, "etl/flag.sql", None, catalog_policy=settings.catalog_policy)]
    for sid in disagree:
        rejected = EtlError(
            EtlError.DB_ERROR,
            "the set-based path rejected a snapshot the reference accepted",
            {"reason": "fast path and reference disagree"},
        )
        fail(conn, sid, rejected, settings, result)


def _count_failure(
    _conn: psycopg.Connection[Any],
    sid: uuid.UUID,
    err: EtlError,
    _settings: EtlSettings,
    result: BatchResult,
    *,
    raw_text: str | None = None,
) -> None:
    """A rejected snapshot counted in `result` only (stage_exact: nothing written)."""
    result.fail(SnapshotFailure(sid, err.error_type, err.message[:500], _cap_details(err.details)))


_DECIMAL_MARK = "\x00\x01sf-decimal:"
_DECIMAL_MARKED = re.compile(r'"\\u0000\\u0001sf-decimal:([^"]*)"')


def _dumps_exact(obj: Any) -> str:
    """JSON text of a canonical payload, writing each Decimal as its exact digits (a jsonb string cannot
    hold the NUL of the marker, so no payload string is ever mistaken for one)."""
    seen = False

    def default(value: Any) -> Any:
        nonlocal seen
        if isinstance(value, Decimal):
            seen = True
            return _DECIMAL_MARK + str(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(obj, default=default)
    return _DECIMAL_MARKED.sub(r"\1", text) if seen else text


def _check_catalogs(conn: psycopg.Connection[Any], snap: contract.NormalizedSnapshot, settings: EtlSettings) -> None:
    params = {
        "troop_ids": [t.troop_id for t in snap.troops],
        "pet_ids": [p.pet_id for p in snap.pets],
        "artifact_ids": [a.artifact_id for a in snap.artifacts],
    }
    missing: dict[str, list[int]] = {}
    for kind, ident in templates.execute(
        conn, "etl/missing_catalog_ids.sql", catalog_policy=settings.catalog_policy, params=params
    ):
        missing.setdefault(kind, []).append(int(ident))
    if missing:
        shown = {k: v[:100] for k, v in missing.items()}
        total = sum(len(v) for v in missing.values())
        raise EtlError(
            EtlError.FK_VIOLATION,
            f"{total} id(s) missing from the catalogs (policy fail)",
            {"missing": shown, "missing_count": total},
        )


def record_failure(
    conn: psycopg.Connection[Any],
    sid: uuid.UUID,
    err: EtlError,
    settings: EtlSettings,
    result: BatchResult,
    *,
    raw_text: str | None = None,
) -> None:
    """Record a failed snapshot: etl_errors row, snapshot bookkeeping, redacted quarantine copy."""
    details = _cap_details(err.details)
    templates.execute(
        conn,
        "etl/record_error.sql",
        {
            "snapshot_id": sid,
            "job_id": settings.job_id,
            "error_type": err.error_type,
            "message": err.message[:500],
            "details": Jsonb(details),
        },
    )
    failure = SnapshotFailure(sid, err.error_type, err.message[:500], details)
    result.fail(failure)
    log.log(  # the message and type only: never the payload
        detail_level(),
        "snapshot %s failed: %s: %s",
        sid,
        err.error_type,
        failure.message,
        extra={
            "event": "snapshot_failed",
            "snapshot_id": str(sid),
            "error_type": err.error_type,
            "job_id": settings.job_id,
        },
    )
    if settings.quarantine_dir is not None:
        if raw_text is None:
            row = templates.execute(
                conn, "etl/fetch_raw.sql", catalog_policy=settings.catalog_policy, params={"snapshot_id": sid}
            ).fetchone()
            raw_text = row[0] if row else None
        quarantine(settings.quarantine_dir, settings.job_id, failure, raw_text)


def _cap_details(details: dict[str, Any]) -> dict[str, Any]:
    data = orjson.dumps(_orjson_safe(details), default=str)
    if len(data) <= _DETAILS_MAX:
        return orjson.loads(data)
    return {"truncated": True, "keys": sorted(details)[:50]}


def _orjson_safe(value: Any) -> Any:
    """`value` with integers orjson cannot encode (beyond 64 bits, e.g. a rejected 25-digit Amount) as text."""
    if isinstance(value, dict):
        return {k: _orjson_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_orjson_safe(v) for v in value]
    if type(value) is int and not -(2**63) <= value < 2**64:
        return str(value)
    return value


def redacted_payload(raw_text: str | None) -> Any:
    """The raw payload with every sensitive key's value replaced (decoding a double-encoded payload)."""
    if raw_text is None:
        return None
    try:
        value = orjson.loads(raw_text)
    except orjson.JSONDecodeError:
        import json

        try:
            value = json.loads(raw_text)
        except ValueError:
            return "[UNPARSEABLE]"
    if isinstance(value, str):
        try:
            inner = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value if not _mentions_sensitive(value) else "[REDACTED]"
        return {"double_encoded": True, "payload": contract.redact(inner)}
    return contract.redact(value)


def _mentions_sensitive(text: str) -> bool:
    low = text.lower()
    return any(part in low for part in contract.SENSITIVE_PARTS)


def quarantine(folder: Path, job_id: str | None, failure: SnapshotFailure, raw_text: str | None) -> Path:
    """Write a redacted copy of a failing snapshot's payload for developer analysis."""
    body = {
        "snapshot_id": str(failure.snapshot_id),
        "error_type": failure.error_type,
        "message": failure.message,
        "details": failure.details,
        "payload": redacted_payload(raw_text),
    }
    return artifacts.write_json(Path(folder) / f"{failure.snapshot_id}.json", "quarantine", job_id, body)


Bookkeeping = Callable[[psycopg.Connection[Any], BatchResult, Any], None]


class ConnectionHolder:
    """One connection that is reopened when it breaks (for retries after a lost connection)."""

    def __init__(self, factory: Callable[[], psycopg.Connection[Any]]) -> None:
        self._factory = factory
        self._conn: psycopg.Connection[Any] | None = None

    def get(self) -> psycopg.Connection[Any]:
        """The live connection, reconnecting if needed."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._factory()
        return self._conn

    def close(self) -> None:
        """Close the connection if open."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def process_batch(
    holder: ConnectionHolder,
    items: Sequence[tuple[uuid.UUID, Any]],
    settings: EtlSettings,
    *,
    bookkeeping: Bookkeeping | None = None,
    retry: dict[str, Any] | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
    stop_on: Callable[[BaseException], bool] | None = None,
) -> BatchResult:
    """Apply `items` ((snapshot id, keyset key), in keyset order) in one transaction, retrying transient
    errors; a batch that fails for another database reason is applied again one snapshot at a time.
    `bookkeeping(conn, result, last_key)` runs in the same transaction as the writes it counts.
    An error for which `stop_on` says True (the guard cut the batch short) is raised, rolled back, as is."""
    retry = retry or {}
    ids = [sid for sid, _ in items]

    def whole() -> BatchResult:
        conn = holder.get()
        with conn.transaction():
            res = apply_in_transaction(conn, ids, settings)
            if bookkeeping is not None:
                bookkeeping(conn, res, items[-1][1] if items else None)
        return res

    try:
        return retrying(whole, on_retry=on_retry, **retry)
    except psycopg.Error as exc:
        if is_transient(exc) or len(items) == 0 or (stop_on is not None and stop_on(exc)):
            raise
    total = BatchResult(fallback=True)
    for sid, key in items:
        total.add(_one(holder, sid, key, settings, bookkeeping, retry, on_retry, stop_on))
    total.fallback = True
    return total


def _one(
    holder: ConnectionHolder,
    sid: uuid.UUID,
    key: Any,
    settings: EtlSettings,
    bookkeeping: Bookkeeping | None,
    retry: dict[str, Any],
    on_retry: Callable[[BaseException, int], None] | None,
    stop_on: Callable[[BaseException], bool] | None = None,
) -> BatchResult:
    started = time.perf_counter()

    def single() -> BatchResult:
        conn = holder.get()
        with conn.transaction():
            res = apply_in_transaction(conn, [sid], settings)
            if bookkeeping is not None:
                bookkeeping(conn, res, key)
        return res

    try:
        return retrying(single, on_retry=on_retry, **retry)
    except psycopg.Error as exc:
        if is_transient(exc) or (stop_on is not None and stop_on(exc)):
            raise
        error = EtlError(
            EtlError.DB_ERROR,
            (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500],
            {"sqlstate": exc.sqlstate, "error_class": type(exc).__name__},
        )

    def failed() -> BatchResult:
        conn = holder.get()
        res = BatchResult(snapshots=1)
        with conn.transaction():
            record_failure(conn, sid, error, settings, res)
            _emit_events(conn, res, settings, started, staged=False)
            if bookkeeping is not None:
                bookkeeping(conn, res, key)
        return res

    return retrying(failed, on_retry=on_retry, **retry)
