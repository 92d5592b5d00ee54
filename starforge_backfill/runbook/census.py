"""Census: what a created_at range of hero_snapshots holds, by payload shape, per month and in total.

One statement (sql/census/census.sql) classifies every snapshot of the range by the snapshot contract's v2
rules (docs SNAPSHOT_CONTRACT.md, "v2") and counts, server-side, in one pass: the top-level form (object,
double-encoded, not an object), the envelope, the first failure the ETL would record (API error bodies,
missing or non-object ProfileData, no namecode anywhere, a section of the wrong type), where the namecode,
display name and guild name come from, each section's form, the payload sizes and the most common unknown
keys. No payload leaves the server. `--sample PERCENT` reads a `TABLESAMPLE SYSTEM` sample of the table's
blocks instead (REPEATABLE with the sample seed, so the same data gives the same figures) and says so.

The census judges shapes, not values: an element with a bad integer is for the dry-run to find.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from starforge_backfill import templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.etl.sensitive import SENSITIVE_PARTS
from starforge_backfill.runbook import gates, step_files
from starforge_backfill.runbook.common import MB
from starforge_backfill.timerange import parse_range

DEFAULT_TOP = 10
BIG_BYTES = MB  # "over 1 MiB"
SAMPLE_METHOD = "TABLESAMPLE SYSTEM"
# Contract v2, rule 8: `username` is sensitive too (etl.sensitive gains it with the v2 ETL).
CENSUS_SENSITIVE_PARTS = tuple(dict.fromkeys((*SENSITIVE_PARTS, "username")))

# Every class of every classification, in display order (zeros are reported too: a stable JSON shape).
CLASSES: dict[str, tuple[str, ...]] = {
    "form": ("object", "double_encoded", "string", "array", "number", "boolean", "null"),
    "envelope": ("enveloped", "bare"),
    "verdict": (
        "ok",
        "not_object",
        "api_error",
        "no_profile_data",
        "profile_data_not_object",
        "no_namecode",
        "invalid_section",
    ),
    "namecode": ("payload", "profile_data", "column", "none"),
    "name": ("payload", "profile_data", "none"),
    "guild": ("guild", "guild_name", "none"),
    "troops": ("array", "keyed", "absent", "invalid"),
    "pets": ("array", "keyed", "absent", "invalid"),
    "artifacts": ("array", "keyed", "absent", "invalid"),
}
SECTIONS = ("troops", "pets", "artifacts")
# The verdicts that fail a snapshot, with the error the ETL records and how an operator reads it.
FAILING: dict[str, tuple[str, str]] = {
    "not_object": ("PARSE_ERROR", "not a JSON object (nor a double-encoded one)"),
    "api_error": ("PARSE_ERROR", "API error body (an `error` key, no ProfileData)"),
    "no_profile_data": ("PARSE_ERROR", "no ProfileData"),
    "profile_data_not_object": ("PARSE_ERROR", "ProfileData not an object"),
    "no_namecode": ("VALIDATION_ERROR", "no namecode anywhere (payload, ProfileData, column)"),
    "invalid_section": ("VALIDATION_ERROR", "Troops, Pets or Artifacts neither an array nor an object"),
}
SIZE_FIGURES = ("min_bytes", "p50_bytes", "p95_bytes", "max_bytes", "over_big", "size_from_column")


def sensitive_re(parts: tuple[str, ...] = CENSUS_SENSITIVE_PARTS) -> str:
    """A POSIX regex matching a key that contains one of `parts` in any case, spelled with explicit classes
    (as etl/_macros.sql does: `~*` depends on the database's locale); the Kelvin sign is a `k` to
    str.lower()."""
    alternatives = []
    for part in parts:
        alternatives.append(
            "".join("[kK\u212a]" if ch == "k" else f"[{ch}{ch.upper()}]" if ch.isalpha() else ch for ch in part.lower())
        )
    return "(" + "|".join(alternatives) + ")"


@dataclasses.dataclass
class Tally:
    """The census of one month (or of the whole range): counts per class, sizes, the most common unknown keys."""

    month: str | None  # "YYYY-MM" (UTC); None for the totals
    snapshots: int
    counts: dict[str, dict[str, int]]
    sizes: dict[str, int | None]
    top_keys: list[tuple[str, int]]
    profile_keys: list[tuple[str, int]]

    def count(self, dim: str, value: str) -> int:
        """Snapshots of class `value` in classification `dim`."""
        return self.counts.get(dim, {}).get(value, 0)

    def share(self, dim: str, value: str) -> float:
        """That count as a share of the month's (or range's) snapshots (0 when there are none)."""
        return self.count(dim, value) / self.snapshots if self.snapshots else 0.0

    @property
    def failing(self) -> int:
        """Snapshots the ETL would fail for their shape (PARSE_ERROR or a shape VALIDATION_ERROR)."""
        return sum(self.count("verdict", v) for v in FAILING)

    @property
    def failing_share(self) -> float:
        """Failing snapshots as a share of all."""
        return self.failing / self.snapshots if self.snapshots else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON shape of a month's (or the totals') census."""
        out: dict[str, Any] = {"month": self.month, "snapshots": self.snapshots}
        for dim, values in CLASSES.items():
            seen = [v for v in self.counts.get(dim, {}) if v not in values]  # none, unless the SQL gains a class
            out[dim] = {
                v: {"snapshots": self.count(dim, v), "share": round(self.share(dim, v), 6)} for v in (*values, *seen)
            }
        out["sizes"] = dict(self.sizes)
        out["failing"] = {"snapshots": self.failing, "share": round(self.failing_share, 6)}
        out["unknown_top_keys"] = [{"key": k, "snapshots": n} for k, n in self.top_keys]
        out["unknown_profile_keys"] = [{"key": k, "snapshots": n} for k, n in self.profile_keys]
        return out


@dataclasses.dataclass
class CensusResult:
    """The census of a range: totals, one tally per month (oldest first), whether it was sampled."""

    from_ts: dt.datetime
    to_ts: dt.datetime
    sample_percent: float | None
    seed: int | None
    top: int
    totals: Tally
    months: list[Tally]
    seconds: float
    artifact: Path | None = None

    @property
    def sampled(self) -> bool:
        """True when the figures are of a TABLESAMPLE SYSTEM sample, not of every snapshot."""
        return self.sample_percent is not None

    @property
    def exit_code(self) -> ExitCode:
        """A census that ran reports; it judges nothing (preflight's payload-shapes item does): 0."""
        return ExitCode.OK

    def failing_shapes(self) -> list[dict[str, Any]]:
        """The failing verdicts present in the range, most snapshots first."""
        rows = [
            {
                "shape": v,
                "error_type": FAILING[v][0],
                "what": FAILING[v][1],
                "snapshots": self.totals.count("verdict", v),
                "share": round(self.totals.share("verdict", v), 6),
            }
            for v in FAILING
            if self.totals.count("verdict", v)
        ]
        return sorted(rows, key=lambda r: (-r["snapshots"], r["shape"]))

    def sampling_note(self) -> str:
        """One line saying how the figures were obtained."""
        if not self.sampled:
            return "exact: every snapshot of the range"
        return (
            f"SAMPLED: {SAMPLE_METHOD} ({self.sample_percent:g}%) REPEATABLE ({self.seed}): counts are of the "
            "sampled snapshots, shares estimate the range"
        )

    def to_json(self) -> dict[str, Any]:
        """`census --json` (and the body of census.json)."""
        return {
            "step": "census",
            "from_ts": self.from_ts.isoformat(),
            "to_ts": self.to_ts.isoformat(),
            "exact": not self.sampled,
            "sampled": (
                {"method": SAMPLE_METHOD, "percent": self.sample_percent, "seed": self.seed} if self.sampled else None
            ),
            "note": self.sampling_note(),
            "top": self.top,
            "big_bytes": BIG_BYTES,
            "totals": self.totals.to_json(),
            "months": [m.to_json() for m in self.months],
            "failing_shapes": self.failing_shapes(),
            "seconds": self.seconds,
            "artifact": str(self.artifact) if self.artifact else None,
        }


def check_options(sample_percent: float | None, top: int) -> None:
    """UsageError unless 0 < --sample <= 100 and --top >= 1."""
    if sample_percent is not None and not 0 < sample_percent <= 100:
        raise UsageError(f"--sample: expected a percentage in (0, 100], got {sample_percent:g}")
    if top < 1:
        raise UsageError(f"--top: expected at least 1, got {top}")


def run_census(
    conn: psycopg.Connection[Any],
    from_ts: dt.datetime,
    to_ts: dt.datetime,
    *,
    sample_percent: float | None = None,
    seed: int = 0,
    top: int = DEFAULT_TOP,
) -> CensusResult:
    """Run the census statement on `conn` for [from_ts, to_ts) and assemble the result (writes nothing)."""
    check_options(sample_percent, top)
    params: dict[str, Any] = {
        "from_ts": from_ts,
        "to_ts": to_ts,
        "big_bytes": BIG_BYTES,
        "top": top,
        "sensitive_re": sensitive_re(),
    }
    if sample_percent is not None:
        params |= {"percent": float(sample_percent), "seed": seed}
    started = time.perf_counter()
    rows = templates.fetch_all(conn, "census/census.sql", params, sampled=sample_percent is not None)
    seconds = round(time.perf_counter() - started, 3)
    totals, months = _tallies(rows)
    return CensusResult(
        from_ts, to_ts, sample_percent, seed if sample_percent is not None else None, top, totals, months, seconds
    )


def _tallies(rows: list[dict[str, Any]]) -> tuple[Tally, list[Tally]]:
    grouped: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        key = None if row["total"] else row["month"].strftime("%Y-%m")
        g = grouped.setdefault(key, {"counts": {}, "sizes": {}, "top_key": [], "profile_key": []})
        dim, value, n = row["dim"], row["value"], row["n"]
        if dim == "size":
            g["sizes"][value] = None if n is None else int(n)
        elif dim in ("top_key", "profile_key"):
            g[dim].append((value, int(n)))
        else:
            g["counts"].setdefault(dim, {})[value] = int(n)

    def tally(month: str | None) -> Tally:
        g = grouped.get(month) or {"counts": {}, "sizes": {}, "top_key": [], "profile_key": []}
        sizes = {name: g["sizes"].get(name) for name in SIZE_FIGURES}
        top_keys, profile_keys = (sorted(g[d], key=lambda kn: (-kn[1], kn[0])) for d in ("top_key", "profile_key"))
        return Tally(month, int(g["sizes"].get("snapshots") or 0), g["counts"], sizes, top_keys, profile_keys)

    months = sorted(k for k in grouped if k is not None)
    return tally(None), [tally(m) for m in months]


def census(
    cfg: Config,
    *,
    from_ts: str | dt.datetime | None,
    to_ts: str | dt.datetime | None,
    sample_percent: float | None = None,
    top: int = DEFAULT_TOP,
    seed: int | None = None,
) -> CensusResult:
    """The `census` step: run the census over a range and write `<runbook dir>/census-<stamp>.json` (and
    census.json, the newest).

    An exact census of an empty range is a usage error (check --from/--to); a sample may come back empty."""
    f, t = parse_range(from_ts, to_ts)
    check_options(sample_percent, top)
    seed = cfg.sample.seed if seed is None else seed
    try:
        with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
            result = run_census(conn, f, t, sample_percent=sample_percent, seed=seed, top=top)
            db = gates.database_identity(conn)
    except pg_errors.QueryCanceled:
        raise UsageError(
            f"the census of [{f.isoformat()}, {t.isoformat()}) ran past database.statement_timeout "
            f"({cfg.database.statement_timeout_s:g} s)",
            hint="sample it (--sample PERCENT) or raise database.statement_timeout",
        ) from None
    if not result.sampled and result.totals.snapshots == 0:
        raise UsageError(
            f"no snapshot in [{f.isoformat()}, {t.isoformat()}): nothing to census", hint="check --from/--to"
        )
    result.artifact = step_files.write_step(cfg, db, "census", "census", result.to_json())
    return result


# preflight's "payload-shapes" item: an exact census up to PREFLIGHT_EXACT_MAX snapshots in the range (about
# 2 s on the bench's 100,000 small snapshots; real payloads of 30 KB-3 MB cost more per snapshot, mostly
# decompression); above it, a TABLESAMPLE SYSTEM sample sized to read about PREFLIGHT_SAMPLE_TARGET of them.
PREFLIGHT_EXACT_MAX = 100_000
PREFLIGHT_SAMPLE_TARGET = 50_000


def judge_shapes(
    conn: psycopg.Connection[Any],
    from_ts: dt.datetime,
    to_ts: dt.datetime,
    *,
    budget: float,
    seed: int,
    exact_max: int = PREFLIGHT_EXACT_MAX,
    sample_target: int = PREFLIGHT_SAMPLE_TARGET,
) -> tuple[bool, str, dict[str, Any]]:
    """Preflight's payload-shapes verdict: (passed, detail, data). Fails when the share of the range that
    would fail by its shape (FAILING) is over `budget` (throttle.failure_rate_max), naming each shape and
    its share; fails on an empty range too."""
    data: dict[str, Any] = {"budget": budget, "exact_max": exact_max}
    percent: float | None = None
    try:
        counts = templates.fetch_one(conn, "census/range_count.sql", {"from_ts": from_ts, "to_ts": to_ts}) or {
            "in_range": 0
        }
        in_range = data["in_range"] = int(counts["in_range"])
        if in_range == 0:
            return False, f"no snapshot in [{from_ts.isoformat()}, {to_ts.isoformat()}): check --from/--to", data
        if in_range > exact_max:
            percent = max(0.0001, round(min(100.0, 100.0 * sample_target / in_range), 4))
        res = run_census(conn, from_ts, to_ts, sample_percent=percent, seed=seed)
    except pg_errors.QueryCanceled:
        what = "exact" if percent is None else f"{percent:g}% sampled"
        return (
            False,
            f"the {what} census of the range ran past database.statement_timeout: raise it, or run "
            "`census --sample PERCENT` to see the shapes",
            data,
        )
    tot = res.totals
    failing = res.failing_shapes()
    data |= {
        "exact": not res.sampled,
        "sampled": res.to_json()["sampled"],
        "snapshots": tot.snapshots,
        "failing": tot.failing,
        "failing_share": round(tot.failing_share, 6),
        "failing_shapes": failing,
        "seconds": res.seconds,
        "totals": tot.to_json(),
    }
    scope = (
        f"exact census of {tot.snapshots:,} snapshot(s)"
        if not res.sampled
        else f"sampled: {SAMPLE_METHOD} ({percent:g}%) read {tot.snapshots:,} of the range's {in_range:,} snapshot(s)"
    )
    if res.sampled and tot.snapshots == 0:
        return False, f"the sample read no snapshot of the range ({scope}): run `census` on it", data
    shapes = ", ".join(f"{f['shape']} {f['share']:.1%} ({f['error_type']})" for f in failing) or "none"
    if tot.failing_share > budget:
        return (
            False,
            f"{tot.failing_share:.1%} of the range would fail by its shape, over the error budget {budget:.1%} "
            f"(throttle.failure_rate_max): {shapes}; {scope}",
            data,
        )
    figures = (
        f"{tot.share('envelope', 'enveloped'):.1%} enveloped, {tot.share('form', 'double_encoded'):.1%} "
        f"double-encoded, namecode from ProfileData {tot.share('namecode', 'profile_data'):.1%}, keyed Troops "
        f"{tot.share('troops', 'keyed'):.1%}"
    )
    return (
        True,
        f"{tot.failing_share:.1%} would fail by shape (within the budget {budget:.1%}): {shapes}; {figures}; {scope}",
        data,
    )
