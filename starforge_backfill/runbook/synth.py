"""`synth load`: fill a staging database with the demo's synthetic snapshots, for the README tour.

The generator (synthetic.py) marks every row it writes `source = 'synthetic'`: a database holding any other
snapshot (NULL source included) is taken for real data and refused unless forced. The load is one COPY in
one transaction (the catalogs, seeded first, are idempotent): a refused or failed load leaves no snapshot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from psycopg import errors as pg_errors

from starforge_backfill import demo, synthetic, templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ExitCode, GateFailed, UsageError
from starforge_backfill.runbook import gates, step_files
from starforge_backfill.schema import check_schema

SYNTHETIC_SOURCE = "synthetic"  # what synthetic.load writes into hero_snapshots.source


@dataclasses.dataclass
class SynthLoadResult:
    """What `synth load` wrote, and where."""

    snapshots: int
    bytes: int
    malformed: int
    by_kind: dict[str, int]
    catalog_rows: dict[str, int]
    seed: int
    bad_rate: float
    from_ts: dt.datetime
    to_ts: dt.datetime
    non_synthetic_before: int
    forced: bool
    seconds: float
    database: dict[str, Any]

    @property
    def exit_code(self) -> ExitCode:
        """Always 0: a refusal raises."""
        return ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """`synth load --json`."""
        return {
            "step": "synth-load",
            "snapshots": self.snapshots,
            "bytes": self.bytes,
            "malformed": self.malformed,
            "by_kind": self.by_kind,
            "catalog_rows": self.catalog_rows,
            "seed": self.seed,
            "bad_rate": self.bad_rate,
            "from_ts": self.from_ts.isoformat(),
            "to_ts": self.to_ts.isoformat(),
            "non_synthetic_before": self.non_synthetic_before,
            "forced": self.forced,
            "seconds": round(self.seconds, 3),
            "database": self.database,
        }


def check_options(snapshots: int, bad_rate: float) -> None:
    """UsageError (exit 2) for a count below 1 or a bad-rate outside [0, 1]."""
    if snapshots < 1:
        raise UsageError(f"--snapshots must be at least 1, got {snapshots}")
    if not 0 <= bad_rate <= 1:
        raise UsageError(f"--bad-rate must be a share between 0 and 1 (e.g. 0.01 for 1%), got {bad_rate:g}")


def load(cfg: Config, *, snapshots: int, seed: int = 7, bad_rate: float = 0.01, force: bool = False) -> SynthLoadResult:
    """Load `snapshots` of the demo's synthetic snapshots; refused (GateFailed, exit 1) on a database that
    holds non-synthetic snapshots unless `force`, and (UsageError) when these very snapshots are loaded."""
    check_options(snapshots, bad_rate)
    spec = demo.demo_spec(snapshots, seed, bad_rate)
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        db = step_files.public_database(gates.database_identity(conn))
        row = templates.fetch_one(conn, "synth/non_synthetic.sql", {"source": SYNTHETIC_SOURCE})
        foreign = int(row["n"]) if row else 0
        if foreign and not force:
            raise GateFailed(
                f"synth load refused: {db['name']} ({db['address']}) already holds {foreign} non-synthetic "
                "snapshot(s): it looks like real data",
                hint="point --dsn at a staging database, or pass --force to add synthetic snapshots anyway",
            )
        try:
            stats = synthetic.load(conn, spec)
        except pg_errors.UniqueViolation:
            raise UsageError(
                f"these synthetic snapshots (seed {seed}) are already loaded in {db['name']}: nothing was added",
                hint="pass another --seed to add more",
            ) from None
        except pg_errors.QueryCanceled:
            raise UsageError(
                f"the load ran past database.statement_timeout ({cfg.database.statement_timeout_s:g} s): "
                "nothing was added",
                hint="load fewer --snapshots at a time, or raise database.statement_timeout",
            ) from None
        templates.execute(conn, "synth/analyze.sql", {})
    by_kind = dict(sorted(stats.by_kind.items()))
    return SynthLoadResult(
        snapshots=stats.snapshots,
        bytes=stats.bytes,
        malformed=sum(n for k, n in by_kind.items() if k != "ok"),
        by_kind=by_kind,
        catalog_rows=dict(stats.catalog_rows),
        seed=seed,
        bad_rate=bad_rate,
        from_ts=spec.start,
        to_ts=spec.start + dt.timedelta(days=spec.span_days),
        non_synthetic_before=foreign,
        forced=force,
        seconds=stats.seconds,
        database=db,
    )
