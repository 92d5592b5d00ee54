"""Sample: pick dry-run snapshots across payload-size buckets, plus known-bad ones, deterministically.

The runbook's sample SQL (ntile over size_bytes, a few random ids per bucket) with `random()` replaced by
`md5(id || seed)`, so the same seed picks the same ids. Known-bad snapshots come from `etl_errors` in the
range and, when those are fewer than wanted, from a validation pre-scan: the pure-Python contract
(`etl.contract.normalize`) over a bounded number of the range's snapshots, fetched one at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill import templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import EtlError, UsageError
from starforge_backfill.etl import contract
from starforge_backfill.runbook import gates, step_files
from starforge_backfill.timerange import parse_range

DEFAULT_PRESCAN_LIMIT = 200


@dataclasses.dataclass(frozen=True)
class Pick:
    """One sampled snapshot and why it was picked."""

    snapshot_id: str
    created_at: str
    size_bytes: int | None
    bucket: int | None
    reason: str
    error_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON shape of a pick."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SampleResult:
    """The sample: picks in order (buckets first, then known-bad), bucket bounds, and where it was written."""

    from_ts: dt.datetime
    to_ts: dt.datetime
    seed: int
    buckets: tuple[int, ...]
    include_bad: int
    picks: list[Pick]
    bucket_stats: list[dict[str, Any]]
    prescanned: int = 0
    artifact: Path | None = None

    @property
    def ids(self) -> list[str]:
        """The sampled snapshot ids, in pick order."""
        return [p.snapshot_id for p in self.picks]

    @property
    def bad(self) -> list[Pick]:
        """The known-bad picks."""
        return [p for p in self.picks if p.bucket is None]

    def to_json(self) -> dict[str, Any]:
        """`sample --json` (and the body of sample.json)."""
        return {
            "step": "sample",
            "from_ts": self.from_ts.isoformat(),
            "to_ts": self.to_ts.isoformat(),
            "seed": self.seed,
            "buckets": list(self.buckets),
            "include_bad": self.include_bad,
            "ids": self.ids,
            "snapshots": [p.to_json() for p in self.picks],
            "bucket_stats": self.bucket_stats,
            "bad_found": len(self.bad),
            "prescanned": self.prescanned,
            "artifact": str(self.artifact) if self.artifact else None,
        }


def parse_buckets(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """`3,3,4` -> (3, 3, 4): snapshots wanted per size bucket, smallest bucket first."""
    if isinstance(text, tuple | list):
        values = [int(v) for v in text]
    else:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise UsageError(f"--buckets: expected comma-separated counts like 3,3,4, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise UsageError(f"--buckets: expected one or more counts >= 0, got {text!r}")
    return tuple(values)


def sample(
    cfg: Config,
    *,
    from_ts: str | dt.datetime | None,
    to_ts: str | dt.datetime | None,
    seed: int | None = None,
    buckets: str | tuple[int, ...] | None = None,
    include_bad: int | None = None,
    prescan_limit: int = DEFAULT_PRESCAN_LIMIT,
) -> SampleResult:
    """Pick the sample and write `<runbook dir>/sample.json`; the same seed and data give the same picks."""
    f, t = parse_range(from_ts, to_ts)
    seed = cfg.sample.seed if seed is None else seed
    per_bucket = parse_buckets(buckets) if buckets is not None else cfg.sample.buckets
    want_bad = cfg.sample.include_bad if include_bad is None else include_bad
    if want_bad < 0:
        raise UsageError("--include-bad must be >= 0")
    params = {"from_ts": f, "to_ts": t, "seed": str(seed)}
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        picks, stats = _bucket_picks(conn, params, per_bucket)
        if not any(b["snapshots"] for b in stats):
            raise UsageError(
                f"no snapshot in [{f.isoformat()}, {t.isoformat()}): nothing to sample", hint="check --from/--to"
            )
        bad, scanned = _bad_picks(conn, params, {uuid.UUID(p.snapshot_id) for p in picks}, want_bad, prescan_limit)
        db = gates.database_identity(conn)
    result = SampleResult(f, t, seed, per_bucket, want_bad, picks + bad, stats, scanned)
    result.artifact = step_files.write_step(cfg, db, "sample", "sample", result.to_json())
    return result


def _bucket_picks(
    conn: psycopg.Connection[Any], params: dict[str, Any], per_bucket: tuple[int, ...]
) -> tuple[list[Pick], list[dict[str, Any]]]:
    picks: list[Pick] = []
    stats: dict[int, dict[str, Any]] = {}
    n = len(per_bucket)
    rows = templates.execute(conn, "runbook/sample_buckets.sql", params | {"per_bucket": list(per_bucket)}).fetchall()
    for sid, created, size, bucket, lo, hi, count, largest in rows:
        why = f"size bucket {bucket} of {n}" + (" (the range's largest)" if largest else "")
        picks.append(Pick(str(sid), created.isoformat(), int(size), int(bucket), why))
        stats.setdefault(int(bucket), {"bucket": int(bucket), "min_bytes": lo, "max_bytes": hi, "snapshots": count})
    out = []
    for b in range(1, n + 1):
        got = sum(1 for p in picks if p.bucket == b)
        out.append(
            stats.get(b, {"bucket": b, "min_bytes": None, "max_bytes": None, "snapshots": None})
            | {"wanted": per_bucket[b - 1], "picked": got}
        )
    return picks, out


def _bad_picks(
    conn: psycopg.Connection[Any], params: dict[str, Any], taken: set[uuid.UUID], want: int, prescan_limit: int
) -> tuple[list[Pick], int]:
    """Known-bad snapshots: etl_errors first, then the pre-scan; returns (picks, snapshots pre-scanned)."""
    if want <= 0:
        return [], 0
    picks: list[Pick] = []
    rows = templates.execute(conn, "runbook/known_bad.sql", params | {"exclude": list(taken), "limit": want}).fetchall()
    for sid, created, size, error_type, _message in rows:
        picks.append(Pick(str(sid), created.isoformat(), int(size), None, "known-bad (etl_errors)", error_type))
        taken.add(sid)
    if len(picks) >= want or prescan_limit <= 0:
        return picks, 0
    scanned = 0
    candidates = templates.execute(
        conn, "runbook/prescan_candidates.sql", params | {"exclude": list(taken), "limit": prescan_limit}
    ).fetchall()
    for sid, created, size in candidates:
        # One payload at a time: never fetchall a batch of multi-MB documents.
        row = templates.execute(conn, "etl/fetch_raw.sql", {"snapshot_id": sid}).fetchone()
        if row is None:
            continue
        scanned += 1
        raw_text, namecode, _created = row
        try:
            contract.normalize(raw_text.encode(), namecode)
        except EtlError as err:
            picks.append(Pick(str(sid), created.isoformat(), int(size), None, "known-bad (pre-scan)", err.error_type))
            if len(picks) >= want:
                break
        finally:
            del raw_text, row
    return picks, scanned
