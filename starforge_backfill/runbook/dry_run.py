"""Dry-run: process a sample (or a range, or ids) through the ETL core without keeping the writes.

Each snapshot is applied alone by `etl.pipeline.apply_in_transaction`, the core every backfill path
shares, inside a transaction that is rolled back: no normalized row, `processed_at`, `etl_errors` row or
catalog placeholder survives in the main database. With a staging DSN the same work runs against that
database and is committed there. Redacted copies of failing payloads go to the dry-run's own quarantine
folder under the runbook artifacts. Per snapshot it records the would-be outcome, rows per table and
seconds; overall t_avg, p95 and the client's peak RSS, and a `dry-run` gate for the config fingerprint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from starforge_backfill import artifacts, jobs, templates
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config
from starforge_backfill.db import (
    connect,
    connect_cfg,
    describe_dsn,
    is_transient,
    retrying,
    translate_errors,
)
from starforge_backfill.errors import EtlError, ExitCode, UsageError
from starforge_backfill.etl.pipeline import BatchResult, ConnectionHolder, EtlSettings, apply_in_transaction
from starforge_backfill.runbook import gates, step_files
from starforge_backfill.runbook.common import RssSampler, elapsed, mb, percentile
from starforge_backfill.timerange import parse_range

DEFAULT_RANGE_LIMIT = 1000
_SCHEMA_ERRORS = (pg_errors.UndefinedTable, pg_errors.UndefinedColumn, pg_errors.UndefinedFunction)
Notify = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclasses.dataclass
class SnapshotOutcome:
    """What applying one snapshot would do."""

    snapshot_id: str
    size_bytes: int | None
    outcome: str  # applied | error | missing
    seconds: float
    error_type: str | None = None
    message: str | None = None
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    placeholders: int = 0
    reference_path: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON shape of one outcome."""
        return dataclasses.asdict(self)


def trial_apply(
    holder: ConnectionHolder,
    snapshot_id: uuid.UUID,
    settings: EtlSettings,
    *,
    keep: bool = False,
    size_bytes: int | None = None,
    retry: dict[str, Any] | None = None,
) -> SnapshotOutcome:
    """Apply one snapshot in its own transaction, rolled back unless `keep`; transient errors are retried,
    any other database error is the snapshot's DB_ERROR outcome."""

    def attempt() -> BatchResult:
        conn = holder.get()
        box: list[BatchResult] = []
        with conn.transaction():
            box.append(apply_in_transaction(conn, [snapshot_id], settings))
            if not keep:
                raise psycopg.Rollback()
        return box[0]

    t0 = time.perf_counter()
    try:
        res = retrying(attempt, **(retry or {}))
    except psycopg.Error as exc:
        if is_transient(exc) or isinstance(exc, _SCHEMA_ERRORS):
            raise  # not the snapshot's fault: the caller turns these into exit codes 3
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
        return SnapshotOutcome(
            str(snapshot_id),
            size_bytes,
            "error",
            elapsed(t0),
            error_type=EtlError.DB_ERROR,
            message=f"{first} (sqlstate {exc.sqlstate})" if exc.sqlstate else first,
        )
    seconds = elapsed(t0)
    out = SnapshotOutcome(
        str(snapshot_id),
        size_bytes,
        "applied" if res.applied else "missing",
        seconds,
        rows={k: int(v) for k, v in sorted(res.rows_written.items())},
        placeholders=len(res.placeholders),
        reference_path=res.reference_path > 0,
    )
    if res.failures:
        failure = res.failures[0]
        out.outcome, out.error_type, out.message = "error", failure.error_type, failure.message
    return out


@dataclasses.dataclass
class DryRunResult:
    """The dry-run's figures, outcomes and verdict."""

    fingerprint: str
    selection: dict[str, Any]
    target: str
    outcomes: list[SnapshotOutcome]
    peak_rss_bytes: int
    rss_growth_bytes: int
    elapsed_s: float
    problems: list[str] = dataclasses.field(default_factory=list)
    artifact: Path | None = None

    @property
    def measured(self) -> list[SnapshotOutcome]:
        """Outcomes of snapshots that exist (applied or failed)."""
        return [o for o in self.outcomes if o.outcome != "missing"]

    @property
    def errors_by_type(self) -> dict[str, int]:
        """Would-be failures per error type."""
        return dict(sorted(Counter(o.error_type for o in self.outcomes if o.error_type).items()))

    @property
    def passed(self) -> bool:
        """True unless a DB_ERROR occurred or nothing could be measured (validation errors are reported only)."""
        return not self.problems and EtlError.DB_ERROR not in self.errors_by_type

    @property
    def exit_code(self) -> ExitCode:
        """0 when passed, else 1."""
        return ExitCode.OK if self.passed else ExitCode.CHECK_FAILED

    def stats(self) -> dict[str, Any]:
        """The summary figures (also the `dry-run` gate's details)."""
        secs = [o.seconds for o in self.measured]
        sizes = [o.size_bytes for o in self.measured if o.size_bytes is not None]
        rows: Counter[str] = Counter()
        for o in self.outcomes:
            rows.update(o.rows)
        return {
            "n": len(self.measured),
            "applied": sum(1 for o in self.outcomes if o.outcome == "applied"),
            "errors": sum(1 for o in self.outcomes if o.outcome == "error"),
            "missing": sum(1 for o in self.outcomes if o.outcome == "missing"),
            "errors_by_type": self.errors_by_type,
            "t_avg_s": round(statistics.fmean(secs), 6) if secs else None,
            "p95_s": percentile(secs, 95),
            "t_max_s": max(secs) if secs else None,
            "avg_size_bytes": round(statistics.fmean(sizes)) if sizes else None,
            "max_size_bytes": max(sizes) if sizes else None,
            "peak_rss_mb": mb(self.peak_rss_bytes),
            "rss_growth_mb": mb(self.rss_growth_bytes),
            "rows_by_table": dict(sorted(rows.items())),
            "placeholders": sum(o.placeholders for o in self.outcomes),
            "reference_path": sum(1 for o in self.outcomes if o.reference_path),
        }

    def to_json(self) -> dict[str, Any]:
        """`dry-run --json`."""
        return {
            "step": "dry-run",
            "passed": self.passed,
            "fingerprint": self.fingerprint,
            "selection": self.selection,
            "target": self.target,
            "elapsed_s": round(self.elapsed_s, 3),
            "problems": self.problems,
            "artifact": str(self.artifact) if self.artifact else None,
            **self.stats(),
            "outcomes": [o.to_json() for o in self.outcomes],
        }


def _select(
    conn: psycopg.Connection[Any],
    cfg: Config,
    sample: str | Path | None,
    from_ts: Any,
    to_ts: Any,
    ids: Sequence[str | uuid.UUID] | None,
    limit: int,
) -> tuple[list[uuid.UUID], dict[str, Any]]:
    """The snapshot ids to dry-run and a description of where they came from."""
    given = [name for name, v in (("--sample", sample), ("--ids", ids)) if v] + (
        ["--from/--to"] if from_ts is not None or to_ts is not None else []
    )
    if len(given) > 1:
        raise UsageError(f"give one of --sample FILE, --from/--to or --ids, not {' and '.join(given)}")
    if ids:
        try:
            wanted = [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i).strip()) for i in ids]
        except ValueError as exc:
            raise UsageError(f"--ids: not a snapshot id (UUID): {exc}") from None
        return list(dict.fromkeys(wanted)), {"source": "ids", "count": len(wanted)}
    if from_ts is not None or to_ts is not None:
        f, t = parse_range(from_ts, to_ts)
        selector = jobs.Selector(from_ts=f, to_ts=t)
        rows = templates.execute(conn, "runbook/wanted_ids.sql", {**selector.params(), "limit": limit + 1}).fetchall()
        truncated = len(rows) > limit
        picked = [r[0] for r in rows[:limit]]
        desc = {"source": "range", "from_ts": f.isoformat(), "to_ts": t.isoformat(), "limit": limit}
        return picked, desc | {"count": len(picked), "truncated": truncated}
    path = Path(sample) if sample else step_files.runbook_dir(cfg, gates.database_identity(conn)) / "sample.json"
    if not path.exists():
        raise UsageError(
            f"no sample file {path}" if sample else "nothing to dry-run: no --sample, --from/--to or --ids given",
            hint="run `starforge-backfill sample --from TS --to TS` first, or pass --ids / --from and --to",
        )
    try:
        data = artifacts.read_json(path, "sample")
        picked = [uuid.UUID(str(i)) for i in data["ids"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a usable sample artifact: {exc}") from None
    return picked, {"source": "sample", "sample": str(path), "count": len(picked), "seed": data.get("seed")}


def dry_run(
    cfg: Config,
    *,
    sample: str | Path | None = None,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
    ids: Sequence[str | uuid.UUID] | None = None,
    staging_dsn: str | None = None,
    limit: int = DEFAULT_RANGE_LIMIT,
    notify: Notify = _quiet,
) -> DryRunResult:
    """Dry-run the selected snapshots; nothing persists in the main database. Records the `dry-run` gate."""
    if from_ts is not None or to_ts is not None:
        from_ts, to_ts = parse_range(from_ts, to_ts)  # a bad option exits 2 before connecting
    fp = cfg.fingerprint()
    started = time.perf_counter()
    with connect_cfg(cfg, autocommit=True) as main, translate_errors(cfg.database.dsn):
        dbid = gates.database_identity(main)
        folder = step_files.runbook_dir(cfg, dbid)
        picked, selection = _select(main, cfg, sample, from_ts, to_ts, ids, limit)
        if not picked:
            raise UsageError("nothing to dry-run: the selection is empty", hint="check --from/--to or the sample")
        sizes = {r[0]: int(r[2]) for r in templates.execute(main, "runbook/snapshot_sizes.sql", {"ids": picked})}
        if staging_dsn:
            db = cfg.database
            target = f"staging {describe_dsn(staging_dsn)} (committed there)"

            def factory() -> psycopg.Connection[Any]:
                return connect(
                    staging_dsn,
                    application_name=f"{db.application_name}:dry-run",
                    statement_timeout_s=db.statement_timeout_s,
                    lock_timeout_s=db.lock_timeout_s,
                    connect_timeout_s=db.connect_timeout_s,
                    autocommit=True,
                )
        else:
            target = f"main {describe_dsn(cfg.database.dsn)} (rolled back)"

            def factory() -> psycopg.Connection[Any]:
                return connect_cfg(cfg, autocommit=True, application_name=f"{cfg.database.application_name}:dry-run")

        notify(f"dry-run: {len(picked)} snapshot(s) against {target}")
        outcomes = _process(factory, picked, sizes, cfg, folder, keep=bool(staging_dsn), staging=bool(staging_dsn))
        result = DryRunResult(
            fingerprint=fp,
            selection=selection,
            target=target,
            outcomes=outcomes[0],
            peak_rss_bytes=outcomes[1].peak,
            rss_growth_bytes=outcomes[1].growth,
            elapsed_s=time.perf_counter() - started,
        )
        if not result.measured:
            result.problems.append("none of the selected snapshots exists: nothing was measured")
        result.artifact = step_files.write_step(cfg, dbid, "dry-run", "dry-run", result.to_json())
        f_ts = selection.get("from_ts")
        t_ts = selection.get("to_ts")
        gates.record_gate(
            main,
            "dry-run",
            fp,
            result.passed,
            from_ts=dt.datetime.fromisoformat(f_ts) if f_ts else None,
            to_ts=dt.datetime.fromisoformat(t_ts) if t_ts else None,
            artifact=result.artifact,
            details={
                k: v
                for k, v in result.stats().items()
                if k in ("t_avg_s", "p95_s", "n", "errors_by_type", "peak_rss_mb", "avg_size_bytes", "max_size_bytes")
            }
            | {"target": "staging" if staging_dsn else "main", "problems": result.problems},
        )
    return result


def _process(
    factory: Callable[[], psycopg.Connection[Any]],
    picked: list[uuid.UUID],
    sizes: dict[uuid.UUID, int],
    cfg: Config,
    folder: Path,
    *,
    keep: bool,
    staging: bool,
) -> tuple[list[SnapshotOutcome], RssSampler]:
    """Apply each snapshot alone; outcomes in selection order and the memory sampler."""
    settings = config_settings.etl(cfg, quarantine_dir=folder / "dry-run-quarantine")
    holder = ConnectionHolder(factory)
    outcomes = []
    try:
        # Create the per-connection staging tables once (temp tables, gone with the session), so the
        # rolled-back transactions below do not re-create them every time.
        conn = holder.get()
        with conn.transaction():
            templates.execute(conn, "etl/stage_tables.sql", catalog_policy=settings.catalog_policy)
        # One untimed, rolled-back pass first: the first statements of a session pay for planning and
        # catalog caches, which would otherwise land on the first snapshot's time and the p95.
        warm = next((sid for sid in picked if sid in sizes), None)
        if warm is not None:
            trial_apply(
                holder, warm, dataclasses.replace(settings, quarantine_dir=None), retry=config_settings.retry(cfg)
            )
        with RssSampler() as rss:
            for sid in picked:
                size = sizes.get(sid)
                if size is None and not staging:
                    outcomes.append(SnapshotOutcome(str(sid), None, "missing", 0.0, message="no such snapshot"))
                    continue
                outcomes.append(
                    trial_apply(holder, sid, settings, keep=keep, size_bytes=size, retry=config_settings.retry(cfg))
                )
    finally:
        holder.close()
    return outcomes, rss
