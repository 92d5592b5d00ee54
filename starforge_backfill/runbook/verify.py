"""Runbook step "Validation & verification": the runbook's queries as named checks, each pass or fail.

Scope: one job (its created_at range and selector: namecodes, ids) or a created_at range, or everything.
Checks, in order:

- `processed_counts`: every snapshot in scope is processed or recorded as failed (etl_errors row or error
  count); for a job also processed_count + error_count == total_count and the job is done.
- `error_types`: etl_errors of the scope by type; fails only when DB_ERROR is present (the other types
  are the data's fault and are quarantined, not the toolkit's).
- `error_budget`: the failed share (failed / (processed + failed)) is within `throttle.failure_rate_max`;
  for a job its own counters, else the scope's snapshots (`error_budget.py`, the judgement `run` exits 1 on).
- `full` (full mode only, `verify_full.py`): every row of every user in scope re-derived set-based in SQL
  with the ETL's own staging statements and diffed against the tables; each difference named.
- `parity`: N users sampled deterministically, their rows re-derived from all their processed snapshots
  with the pure-Python contract (newest observation wins) and compared column by column (both modes: the
  independent reference catches on the sample what a bug shared by the ETL and full mode would hide).
- `uniqueness`: the runbook's duplicate-key query for every normalized table (users of the scope).
- `summary_coverage`: every user with a processed snapshot in scope has a user_profile_summary row.
- `placeholders`: placeholder catalog rows, listed; always a pass, with a note when there are any.
- `orphans`: no user_troops/pets/artifacts row without its user or catalog row (the schema `db init`
  creates has no foreign keys there; the ETL guarantees them and this check proves it).

Mode: `full` when asked (--full), or by default for a job that is done; else `sample` (--sample, or
a range, or a job still running: the check to use during a run).

The result goes to `verify.json`: in the job's folder with --job-id, else `<artifacts>/runbook/<fp12>/`;
it is also recorded as gate `verify` for the config fingerprint. No click or rich here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill import artifacts, error_budget, jobs, templates
from starforge_backfill import settings as config_settings
from starforge_backfill.artifacts import jsonable
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.runbook import gates, parity, step_files, verify_full
from starforge_backfill.runbook.common import Check
from starforge_backfill.runbook.gates import record_gate
from starforge_backfill.schema import check_schema
from starforge_backfill.timerange import parse_optional_ts as parse_ts

DEFAULT_SAMPLE_USERS = 20
MODES = ("full", "sample")
SHOWN = 20  # ids or mismatches listed in a check's details
Notify = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclasses.dataclass
class VerifyResult:
    """Every check of one verification."""

    scope: dict[str, Any]
    checks: list[Check]
    job_id: str | None = None
    artifact: Path | None = None
    mode: str = "sample"
    mode_detail: str = ""

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [c.name for c in self.checks if not c.passed]

    @property
    def exit_code(self) -> ExitCode:
        """0 when every check passed, else 1."""
        return ExitCode.OK if self.passed else ExitCode.CHECK_FAILED

    def to_json(self) -> dict[str, Any]:
        """`verify --json`, also the body of verify.json."""
        return {
            "passed": self.passed,
            "failed": self.failed,
            "mode": self.mode,
            "mode_detail": self.mode_detail,
            "scope": jsonable(self.scope),
            "checks": [c.to_json() for c in self.checks],
            "artifact": str(self.artifact) if self.artifact else None,
        }


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which snapshots a verification covers (None: no limit)."""

    from_ts: dt.datetime | None = None
    to_ts: dt.datetime | None = None
    namecodes: tuple[str, ...] | None = None
    ids: tuple[uuid.UUID, ...] | None = None
    job: dict[str, Any] | None = None

    def params(self) -> dict[str, Any]:
        """The bound parameters of `sql/verify/_scope.sql`."""
        return {
            "from_ts": self.from_ts,
            "to_ts": self.to_ts,
            "namecodes": list(self.namecodes) if self.namecodes is not None else None,
            "ids": list(self.ids) if self.ids is not None else None,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "job_id": self.job["job_id"] if self.job else None,
            "from_ts": self.from_ts,
            "to_ts": self.to_ts,
            "namecodes": list(self.namecodes) if self.namecodes is not None else None,
            "ids": len(self.ids) if self.ids is not None else None,
        }


def _scope(conn: psycopg.Connection[Any], job_id: str | None, from_ts: Any, to_ts: Any) -> Scope:
    if job_id is not None and (from_ts is not None or to_ts is not None):
        raise UsageError("give --job-id or --from/--to, not both")
    if job_id is not None:
        job = jobs.get_job(conn, job_id)
        if job is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
        sel = jobs.Selector.from_job(job)
        return Scope(sel.from_ts, sel.to_ts, sel.namecodes, sel.ids, job)
    if (from_ts is None) != (to_ts is None):
        raise UsageError("give both --from and --to (or neither, to verify every snapshot)")
    f, t = parse_ts(from_ts, "--from"), parse_ts(to_ts, "--to")
    if f is not None and t is not None and f >= t:
        raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t.isoformat()})")
    return Scope(f, t)


def check_processed(conn: psycopg.Connection[Any], scope: Scope) -> Check:
    """Every snapshot in scope processed or failed; for a job, its counters add up and it is done."""
    p = scope.params()
    counts = templates.fetch_all(conn, "verify/processed_counts.sql", p)[0]
    data: dict[str, Any] = {k: int(v) for k, v in counts.items()}
    problems = []
    if counts["unaccounted"]:
        first = templates.fetch_all(conn, "verify/unaccounted.sql", p | {"limit": SHOWN})
        data["first_unaccounted"] = [{"id": r["id"], "created_at": r["created_at"]} for r in first]
        problems.append(f"{counts['unaccounted']} snapshot(s) neither processed nor recorded as failed")
    summary = (
        f"{counts['total']} snapshot(s) in scope: {counts['processed']} processed, {counts['failed']} failed, "
        f"{counts['unaccounted']} unaccounted"
    )
    job = scope.job
    if job is not None:
        done, errors, total = int(job["processed_count"]), int(job["error_count"]), int(job.get("total_count") or 0)
        data["job"] = {"status": job["status"], "processed_count": done, "error_count": errors, "total_count": total}
        summary += f"; job {job['status']}: {done} processed + {errors} failed of {total}"
        if done + errors != total:
            problems.append(f"job counters: processed_count {done} + error_count {errors} != total_count {total}")
        if job["status"] != "done":
            problems.append(f"the job is {job['status']}, not done")
    text = "; ".join(problems) + f" ({summary})" if problems else summary
    return Check("processed_counts", not problems, text, data)


def check_error_types(conn: psycopg.Connection[Any], scope: Scope) -> Check:
    """etl_errors by type for the scope; DB_ERROR fails (the toolkit's fault), other types are data faults."""
    rows = templates.fetch_all(conn, "verify/error_types.sql", scope.params())
    table = [
        {
            "error_type": r["error_type"],
            "errors": int(r["errors"]),
            "snapshots": int(r["snapshots"]),
            "newest": r["newest"],
        }
        for r in rows
    ]
    by_type = {r["error_type"]: r["errors"] for r in table}
    text = ", ".join(f"{k} {v}" for k, v in by_type.items()) or "no etl_errors"
    db_errors = by_type.get("DB_ERROR", 0)
    summary = f"DB_ERROR present ({db_errors}): {text}" if db_errors else text
    note = (
        "PARSE_ERROR/VALIDATION_ERROR/FK_VIOLATION are the data's fault: see the quarantine folder" if table else None
    )
    return Check("error_types", not db_errors, summary, {"by_type": table}, note=note)


def check_error_budget(conn: psycopg.Connection[Any], scope: Scope, max_rate: float) -> Check:
    """The failed share against `throttle.failure_rate_max`: a job's own counters, else the scope's snapshots."""
    if scope.job is not None:
        budget = error_budget.of_job(conn, scope.job, scope.params(), max_rate)
    else:
        counts = templates.fetch_all(conn, "verify/processed_counts.sql", scope.params())[0]
        rows = templates.fetch_all(conn, "verify/error_types.sql", scope.params())
        by_type = {r["error_type"]: int(r["snapshots"]) for r in rows}
        budget = error_budget.of_scope(conn, counts, by_type, scope.params(), max_rate)
    return Check(
        "error_budget",
        not budget.over,
        budget.line(),
        budget.to_json(),
        value=round(budget.rate, 6),
        threshold=max_rate,
    )


def check_parity(conn: psycopg.Connection[Any], scope: Scope, sample_users: int, seed: int) -> Check:
    """Re-derive sampled users' rows from their processed snapshots and compare field by field."""
    if sample_users <= 0:
        return Check("parity", True, "skipped (--sample-users 0)", {"users": 0})
    users = templates.fetch_all(conn, "verify/sample_users.sql", scope.params() | {"seed": seed, "limit": sample_users})
    mismatches: list[parity.Mismatch] = []
    per_user = []
    snapshots = 0
    for row in users:
        n, found = parity.check_user(conn, row["user_id"])
        snapshots += n
        mismatches += found
        per_user.append({"user_id": row["user_id"], "snapshots": n, "mismatches": len(found)})
    data = {
        "users": len(users),
        "snapshots": snapshots,
        "mismatch_count": len(mismatches),
        "mismatches": [m.to_json() for m in mismatches[:SHOWN]],
        "per_user": per_user,
    }
    if mismatches:
        bad_users = sum(1 for u in per_user if u["mismatches"])
        summary = f"{len(mismatches)} mismatch(es) in {bad_users} of {len(users)} user(s); first: " + "; ".join(
            m.describe() for m in mismatches[:3]
        )
        return Check("parity", False, summary, data)
    if not users:
        return Check("parity", True, "no processed snapshot in scope: nothing to compare", data)
    return Check(
        "parity", True, f"{len(users)} user(s), {snapshots} processed snapshot(s) re-derived: no mismatch", data
    )


def check_full(
    conn: psycopg.Connection[Any],
    cfg: Config,
    scope: Scope,
    notify: Notify,
    out: list[verify_full.FullResult] | None = None,
) -> Check:
    """Every row of every user in scope re-derived set-based and diffed (verify_full.py)."""
    everything = scope.job is None and scope.from_ts is None and scope.to_ts is None
    res = verify_full.run_full(conn, config_settings.etl(cfg), scope.params(), everything=everything, notify=notify)
    if out is not None:
        out.append(res)
    return res.check()


def check_uniqueness(conn: psycopg.Connection[Any], scope: Scope) -> Check:
    """The runbook's duplicate-key query, per table."""
    rows = templates.fetch_all(conn, "verify/duplicates.sql", scope.params())
    per_table: dict[str, list[dict[str, Any]]] = {
        t: [] for t in ("user_troops", "user_pets", "user_artifacts", "user_profile_summary", "users")
    }
    for r in rows:
        per_table[r["table_name"]].append({"key": r["key"], "rows": int(r["n"])})
    bad = {t: v for t, v in per_table.items() if v}
    if not bad:
        return Check("uniqueness", True, f"no duplicate keys in {', '.join(per_table)}", {"duplicates": {}})
    first = [f"{t}[{', '.join(f'{k}={v}' for k, v in d[0]['key'].items())}] x{d[0]['rows']}" for t, d in bad.items()]
    summary = "duplicate keys: " + ", ".join(f"{t} {len(v)}" for t, v in bad.items()) + " (" + "; ".join(first) + ")"
    return Check("uniqueness", False, summary, {"duplicates": bad})


def check_summary_coverage(conn: psycopg.Connection[Any], scope: Scope) -> Check:
    """Every user with a processed snapshot in scope has a summary row."""
    row = templates.fetch_all(conn, "verify/summary_coverage.sql", scope.params() | {"limit": SHOWN})[0]
    users, missing = int(row["users"]), int(row["missing"])
    data = {"users": users, "missing": missing, "first_missing": row["first_missing"]}
    if missing:
        names = ", ".join(f"{m['namecode']} ({m['user_id']})" for m in row["first_missing"][:5])
        return Check(
            "summary_coverage", False, f"{missing} of {users} user(s) have no user_profile_summary row: {names}", data
        )
    return Check("summary_coverage", True, f"all {users} user(s) with a processed snapshot have a summary", data)


def check_placeholders(conn: psycopg.Connection[Any]) -> Check:
    """Placeholder catalog rows: listed; a pass, with a note to replace them with authoritative data."""
    counts = templates.fetch_all(conn, "verify/placeholder_count.sql", {})[0]
    total = sum(int(v) for v in counts.values())
    listed = templates.fetch_all(conn, "verify/placeholders.sql", {"limit": 500})
    data = {"count": total, "by_kind": {k: int(v) for k, v in counts.items()}, "rows": listed}
    if not total:
        return Check("placeholders", True, "no placeholder catalog rows", data)
    shown = ", ".join(f"{r['kind']} {r['id']}" for r in listed[:10]) + (" ..." if total > 10 else "")
    return Check(
        "placeholders",
        True,
        f"{total} placeholder catalog row(s): {shown}",
        data,
        note="runbook post-backfill: replace placeholder rows with authoritative catalog data",
    )


def check_orphans(conn: psycopg.Connection[Any]) -> Check:
    """Every derived row has its user and its catalog row."""
    found = templates.fetch_all(conn, "verify/orphans.sql", {"limit": 50})
    total = int(found[0]["total"]) if found else 0
    data = {"count": total, "rows": [{k: v for k, v in r.items() if k != "total"} for r in found]}
    if not total:
        return Check("orphans", True, "every derived row has its user and catalog row", data)
    first = found[0]
    what = "user" if first["missing_user"] else "catalog row"
    return Check(
        "orphans",
        False,
        f"{total} derived row(s) without their user or catalog row, e.g. "
        f"{first['tbl']}[user_id={first['user_id']}, id={first['item_id']}]: no {what}",
        data,
    )


def verify(
    cfg: Config,
    *,
    job_id: str | None = None,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
    sample_users: int | None = None,
    mode: str | None = None,
    notify: Notify | None = None,
) -> VerifyResult:
    """Run every check over the scope, write verify.json and record gate `verify`. `mode` "full" or
    "sample"; None: full for a job that is done, else sample."""
    notify = notify or _quiet
    n = DEFAULT_SAMPLE_USERS if sample_users is None else sample_users
    if n < 0:
        raise UsageError("--sample-users must be >= 0")
    if mode is not None and mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        scope = _scope(conn, job_id, from_ts, to_ts)
        if mode is None:
            mode = "full" if scope.job is not None and scope.job["status"] == "done" else "sample"
        full_res: list[verify_full.FullResult] = []
        checks = []
        steps: list[tuple[str, Callable[[], Check]]] = [
            ("processed counts", lambda: check_processed(conn, scope)),
            ("error types", lambda: check_error_types(conn, scope)),
            ("error budget", lambda: check_error_budget(conn, scope, cfg.throttle.failure_rate_max)),
        ]
        if mode == "full":
            steps.append(("full (every row)", lambda: check_full(conn, cfg, scope, notify, full_res)))
        steps += [
            (f"parity ({n} users)", lambda: check_parity(conn, scope, n, cfg.sample.seed)),
            ("uniqueness", lambda: check_uniqueness(conn, scope)),
            ("summary coverage", lambda: check_summary_coverage(conn, scope)),
            ("placeholders", lambda: check_placeholders(conn)),
            ("orphans", lambda: check_orphans(conn)),
        ]
        for label, fn in steps:
            notify(f"checking {label} ...")
            checks.append(fn())
        if full_res:
            detail = f"full: every row of {full_res[0].users} user(s)" + (
                f", and sample: {n} user(s) re-derived by the Python reference" if n else ""
            )
        else:
            detail = f"sample: {n} user(s) re-derived by the Python reference"
        result = VerifyResult(jsonable(scope.to_json()), checks, job_id=job_id, mode=mode, mode_detail=detail)
        fp = cfg.fingerprint()
        db = gates.database_identity(conn)
        if job_id:
            result.artifact = artifacts.job_dir(cfg.artifacts_dir, job_id) / "verify.json"
            body = {**result.to_json(), "database": step_files.public_database(db)}
            artifacts.write_json(result.artifact, "verify", job_id, body)
        else:
            result.artifact = step_files.write_step(cfg, db, "verify", "verify", result.to_json())
        record_gate(
            conn,
            "verify",
            (scope.job or {}).get("config_fingerprint") or fp,
            result.passed,
            job_id=job_id,
            from_ts=scope.from_ts,
            to_ts=scope.to_ts,
            artifact=result.artifact,
            details={"failed": result.failed, "mode": mode, "summaries": {c.name: c.detail for c in checks}},
        )
        if job_id:
            jobs.record_event(
                conn,
                job_id,
                "verify",
                f"verification ({mode}) passed"
                if result.passed
                else f"verification ({mode}) failed: {', '.join(result.failed)}",
                {"failed": result.failed, "mode": mode, "artifact": str(result.artifact)},
            )
    return result
