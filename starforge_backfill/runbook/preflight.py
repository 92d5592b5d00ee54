"""Preflight: every item of the runbook's "Preflight checklist (must pass)" as a named check.

Each check ends pass, fail or attested (an operator's word the tool cannot verify: a backup id, approvals,
communication) with a one-line detail. Checks that read the database never write to it: the streaming
check applies the largest snapshot of the range in a transaction that is rolled back. The payload-shapes
check runs the census (runbook/census.py) over the range, sampled above 100,000 snapshots. The result is
written to `<runbook dir>/preflight-<stamp>.json` (and `preflight.json`,
the newest) and recorded as the `preflight` gate that `run` requires.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from starforge_backfill import artifacts, capacity, monitoring, schema, templates
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import EtlError, ExitCode, UsageError
from starforge_backfill.etl.pipeline import ConnectionHolder
from starforge_backfill.redact import redact_dsn, scrub_text
from starforge_backfill.runbook import gates, server_settings, step_files
from starforge_backfill.runbook.census import judge_shapes
from starforge_backfill.runbook.common import ATTESTED, FAIL, PASS, Check, RssSampler, mb
from starforge_backfill.runbook.dry_run import trial_apply
from starforge_backfill.timerange import parse_range

ATTESTABLE = ("communication",)
CHECKS = (
    "backup",
    "approvals",
    "dry-run",
    "streaming",
    "payload-shapes",
    "catalog-coverage",
    "capacity",
    "server-settings",
    "monitoring",
    "communication",
    "schema",
)
DEFAULT_CATALOG_SCAN = 1000
READY_TIMEOUT_S = 3.0


@dataclasses.dataclass
class PreflightResult:
    """Every check, the verdict and where it was recorded."""

    fingerprint: str
    from_ts: dt.datetime
    to_ts: dt.datetime
    concurrency: int
    checks: list[Check]
    artifact: Path | None = None

    @property
    def failed(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if c.result == FAIL]

    @property
    def passed(self) -> bool:
        """True when no check failed (attested items count as passed)."""
        return not self.failed

    @property
    def exit_code(self) -> ExitCode:
        """0 when every check passed or was attested; 3 when the schema check failed (the database lacks the
        expected schema, as for every other command); else 1."""
        if self.check("schema").result == FAIL:
            return ExitCode.DATABASE
        return ExitCode.OK if self.passed else ExitCode.CHECK_FAILED

    def check(self, name: str) -> Check:
        """The check called `name`."""
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict[str, Any]:
        """`preflight --json` (and the body of preflight.json)."""
        return {
            "step": "preflight",
            "passed": self.passed,
            "failed": self.failed,
            "fingerprint": self.fingerprint,
            "from_ts": self.from_ts.isoformat(),
            "to_ts": self.to_ts.isoformat(),
            "concurrency": self.concurrency,
            "checks": [c.to_json() for c in self.checks],
            "artifact": str(self.artifact) if self.artifact else None,
        }


def parse_approvals(values: Sequence[str]) -> dict[str, list[str]]:
    """`engineering:alice` ... -> {"engineering": ["alice"]} (roles lower-cased); UsageError when malformed."""
    out: dict[str, list[str]] = {}
    for value in values:
        role, sep, name = value.partition(":")
        if not sep or not role.strip() or not name.strip():
            raise UsageError(f"--approved-by: expected ROLE:NAME (e.g. sre:bob), got {value!r}")
        out.setdefault(role.strip().lower(), []).append(name.strip())
    return out


def preflight(
    cfg: Config,
    *,
    from_ts: str | dt.datetime | None,
    to_ts: str | dt.datetime | None,
    backup_id: str | None = None,
    take_backup: str | Path | None = None,
    approved_by: Sequence[str] = (),
    attest: Sequence[str] = (),
    concurrency: int | None = None,
    catalog_scan_limit: int = DEFAULT_CATALOG_SCAN,
    notify: Callable[[str], None] | None = None,
) -> PreflightResult:
    """Run every checklist item for a range; write preflight.json and record the `preflight` gate."""
    f, t = parse_range(from_ts, to_ts)
    approvals = parse_approvals(approved_by)
    unknown = sorted(set(attest) - set(ATTESTABLE))
    if unknown:
        raise UsageError(f"--attest: unknown item(s) {', '.join(unknown)} (attestable: {', '.join(ATTESTABLE)})")
    concurrency = concurrency or cfg.job.concurrency
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    fp = cfg.fingerprint()
    say = notify or (lambda _m: None)
    checks: list[Check] = []
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        say("preflight: schema")
        checks.append(_guard("schema", lambda: _schema(conn)))
        schema_ok = checks[-1].result != FAIL
        say("preflight: backup")
        checks.append(_guard("backup", lambda: _backup(cfg, backup_id, take_backup)))
        checks.append(_approvals(cfg, approvals))
        checks.append(_db_check("dry-run", schema_ok, lambda: _dry_run_gate(conn, fp)))
        say("preflight: streaming (largest snapshot, rolled back)")
        checks.append(_db_check("streaming", schema_ok, lambda: _streaming(cfg, conn, f, t)))
        say("preflight: payload shapes (census)")
        checks.append(_db_check("payload-shapes", schema_ok, lambda: _payload_shapes(cfg, conn, f, t)))
        say("preflight: catalog coverage")
        checks.append(_db_check("catalog-coverage", schema_ok, lambda: _catalog(cfg, conn, f, t, catalog_scan_limit)))
        checks.append(_guard("capacity", lambda: _capacity(cfg, conn, concurrency)))
        checks.append(_db_check("server-settings", schema_ok, lambda: _server_settings(conn, f, t, concurrency)))
        checks.append(_guard("monitoring", lambda: _monitoring(cfg)))
        checks.append(
            Check("communication", ATTESTED, "support and stakeholders informed (attested by the operator)")
            if "communication" in attest
            else Check(
                "communication", FAIL, "not attested: inform support and stakeholders, then pass --attest communication"
            )
        )
        checks.sort(key=lambda c: CHECKS.index(c.name))
        result = PreflightResult(fp, f, t, concurrency, checks)
        db = gates.database_identity(conn)
        result.artifact = step_files.write_step(cfg, db, "preflight", "preflight", result.to_json())
        if gates_table_present(result.check("schema")):
            gates.record_gate(
                conn,
                "preflight",
                fp,
                result.passed,
                from_ts=f,
                to_ts=t,
                concurrency=concurrency,
                artifact=result.artifact,
                details={
                    "checks": {c.name: c.result for c in checks},
                    "failed": result.failed,
                    "backup": result.check("backup").data,
                    "approvals": approvals,
                    "concurrency": concurrency,
                },
            )
    return result


def gates_table_present(schema_check: Check) -> bool:
    """True when the schema check read the catalog and `backfill_gates` was not missing: a gate can be recorded.

    A schema check that could not read the catalog (a database error) has no `missing_columns`: not present."""
    missing = schema_check.data.get("missing_columns")
    return missing is not None and "backfill_gates" not in missing


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    """Run a check; a database error inside it fails that check, not the whole preflight."""
    try:
        return fn()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Check(name, FAIL, f"database error: {first}")


def _db_check(name: str, schema_ok: bool, fn: Callable[[], Check]) -> Check:
    if not schema_ok:
        return Check(name, FAIL, "not checked: the schema is incompatible (see the schema check)")
    return _guard(name, fn)


def _schema(conn: psycopg.Connection[Any]) -> Check:
    missing = schema.missing_columns(conn)
    indexes = (
        [r[0] for r in templates.execute(conn, "runbook/created_at_index.sql")]
        if "hero_snapshots" not in missing
        else []
    )
    problems = []
    if missing:
        problems.append("missing " + "; ".join(f"{tbl}({', '.join(cols[:4])})" for tbl, cols in missing.items()))
    if not indexes and "hero_snapshots" not in missing:
        problems.append("no valid, non-partial index on hero_snapshots (created_at, id)")
    data = {"missing_columns": missing, "created_at_id_indexes": indexes}
    if problems:
        return Check("schema", FAIL, "; ".join(problems) + " (run `starforge-backfill db init` on staging)", data)
    return Check("schema", PASS, f"every required table and column present; index {indexes[0]}", data)


def _backup(cfg: Config, backup_id: str | None, take_backup: str | Path | None) -> Check:
    data: dict[str, Any] = {"backup_id": backup_id}
    if take_backup:
        dumped = _pg_dump(cfg.database.dsn or "", Path(take_backup))
        data |= dumped
        if dumped.get("error"):
            return Check("backup", FAIL, f"pg_dump failed: {dumped['error']}", data)
        detail = f"pg_dump -Fc to {dumped['path']}: {dumped['size_bytes']} bytes, sha256 {dumped['sha256'][:16]}..."
        if backup_id:
            detail += f"; backup id {backup_id}"
        return Check("backup", PASS, detail, data)
    if backup_id:
        return Check("backup", ATTESTED, f"backup id {backup_id} recorded (attested by the operator)", data)
    return Check(
        "backup", FAIL, "no backup: pass --backup-id ID (a backup taken elsewhere) or --take-backup PATH", data
    )


def _pg_dump(dsn: str, path: Path) -> dict[str, Any]:
    """`pg_dump -Fc` of the DSN's database to `path`; the password travels in PGPASSWORD, never in argv."""
    exe = shutil.which("pg_dump")
    if exe is None:
        return {"path": str(path), "error": "pg_dump not found on PATH"}
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(
        [exe, "--format=custom", f"--file={path}", f"--dbname={make_conninfo('', **params)}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        message = lines[-1] if lines else f"exit status {proc.returncode}"
        return {"path": str(path), "error": scrub_text(message, [str(password)] if password else [])}
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "sha256": artifacts.sha256_file(path),
        "seconds": round(time.perf_counter() - started, 3),
        "format": "custom",
        "database": params.get("dbname"),
    }


def _approvals(cfg: Config, approvals: dict[str, list[str]]) -> Check:
    required = [r.lower() for r in cfg.gates.required_approvals]
    missing = [r for r in required if r not in approvals]
    given = ", ".join(f"{role}: {', '.join(names)}" for role, names in sorted(approvals.items())) or "none"
    data = {"required": required, "given": approvals}
    if missing:
        return Check(
            "approvals",
            FAIL,
            f"missing approval from {', '.join(missing)} (given: {given}); pass --approved-by ROLE:NAME",
            data,
        )
    return Check("approvals", ATTESTED, f"approved by {given}", data)


def _dry_run_gate(conn: psycopg.Connection[Any], fp: str) -> Check:
    row = gates.latest_gate(conn, "dry-run", fp)
    if row is None:
        return Check("dry-run", FAIL, f"no dry-run recorded for this config (fingerprint {fp[:12]}): run `dry-run`")
    d = row.get("details") or {}
    when = f"{row['created_at']:%Y-%m-%d %H:%M} UTC"
    data = {"created_at": row["created_at"].isoformat(), "passed": row["passed"], "details": d}
    if not row["passed"]:
        return Check("dry-run", FAIL, f"the latest dry-run ({when}) failed: {d.get('errors_by_type')}", data)
    return Check(
        "dry-run",
        PASS,
        f"dry-run of {when}: n={d.get('n')}, t_avg {d.get('t_avg_s')} s, p95 {d.get('p95_s')} s, "
        f"errors {d.get('errors_by_type') or 'none'}",
        data,
    )


def _streaming(cfg: Config, conn: psycopg.Connection[Any], f: dt.datetime, t: dt.datetime) -> Check:
    row = templates.execute(conn, "runbook/largest_snapshot.sql", {"from_ts": f, "to_ts": t}).fetchone()
    if row is None:
        return Check("streaming", FAIL, f"no snapshot in [{f.isoformat()}, {t.isoformat()}): check --from/--to")
    sid, size, _created = row
    settings = config_settings.etl(cfg)
    holder = ConnectionHolder(
        lambda: connect_cfg(cfg, autocommit=True, application_name=f"{cfg.database.application_name}:preflight")
    )
    try:
        with RssSampler() as rss:
            out = trial_apply(holder, sid, settings, keep=False, size_bytes=int(size))
    finally:
        holder.close()
    limit = cfg.database.statement_timeout_s
    data = {
        "snapshot_id": str(sid),
        "size_bytes": int(size),
        "seconds": out.seconds,
        "rss_growth_mb": mb(rss.growth),
        "peak_rss_mb": mb(rss.peak),
        "outcome": out.outcome,
        "error_type": out.error_type,
        "statement_timeout_s": limit,
    }
    what = f"largest snapshot {sid} ({int(size) / 1e6:.2f} MB): {out.seconds:.3f} s, client RSS +{mb(rss.growth)} MiB"
    if out.error_type == EtlError.DB_ERROR:
        return Check("streaming", FAIL, f"{what}; DB_ERROR: {out.message}", data)
    if limit and out.seconds > limit:
        return Check("streaming", FAIL, f"{what}; slower than the statement timeout ({limit:g} s)", data)
    if out.error_type:
        what += f" (it fails validation: {out.error_type}, as a run would record it)"
    return Check("streaming", PASS, what + ", rolled back", data)


def _payload_shapes(cfg: Config, conn: psycopg.Connection[Any], f: dt.datetime, t: dt.datetime) -> Check:
    passed, detail, data = judge_shapes(conn, f, t, budget=cfg.throttle.failure_rate_max, seed=cfg.sample.seed)
    return Check("payload-shapes", PASS if passed else FAIL, detail, data)


def _catalog(cfg: Config, conn: psycopg.Connection[Any], f: dt.datetime, t: dt.datetime, limit: int) -> Check:
    rows = templates.execute(
        conn, "runbook/catalog_coverage.sql", {"from_ts": f, "to_ts": t, "scan_limit": limit}
    ).fetchall()
    per_kind: dict[str, dict[str, Any]] = {
        kind: {"missing_ids": int(m), "snapshots": int(s), "examples": list(ex)} for kind, _sc, _r, m, s, ex in rows
    }
    scanned = int(rows[0][1]) if rows else 0
    in_range = int(rows[0][2]) if rows else 0
    total = sum(v["missing_ids"] for v in per_kind.values())
    snaps = max((v["snapshots"] for v in per_kind.values()), default=0)
    policy = cfg.etl.catalog_policy
    scope = f"scanned {scanned} of {in_range} snapshot(s) in the range"
    data = {"policy": policy, "scanned": scanned, "in_range": in_range, "missing": per_kind}
    if total == 0:
        return Check("catalog-coverage", PASS, f"every referenced id is in its catalog ({scope})", data)
    counts = ", ".join(f"{k} {v['missing_ids']}" for k, v in per_kind.items() if v["missing_ids"])
    if policy == "placeholder":
        return Check(
            "catalog-coverage",
            PASS,
            f"{total} id(s) missing from the catalogs ({counts}): policy placeholder will create {total} "
            f"placeholder row(s) ({scope})",
            data,
        )
    return Check(
        "catalog-coverage",
        FAIL,
        f"{total} id(s) missing from the catalogs ({counts}): under policy fail at least {snaps} snapshot(s) "
        f"would fail with FK_VIOLATION ({scope}); seed the catalogs or use policy placeholder",
        data,
    )


def _capacity(cfg: Config, conn: psycopg.Connection[Any], concurrency: int) -> Check:
    cap = capacity.read(conn, cfg.database.max_connections_share)
    planned = capacity.connections_for(concurrency)
    data = cap.to_json() | {"planned": planned}
    head = (
        f"max_connections {cap.max_connections}, {cap.in_use} in use; planned {planned} (C={concurrency} + 1 control)"
    )
    share = f"share {cap.share:g}"
    if not cap.fits(concurrency):
        return Check("capacity", FAIL, f"{head} exceeds the budget {cap.budget} ({share}); lower --concurrency", data)
    if planned > cap.free:
        return Check("capacity", FAIL, f"{head}: only {cap.free} connection(s) free right now", data)
    return Check("capacity", PASS, f"{head} within the budget {cap.budget} ({share}); CPU/IO not checked", data)


def _server_settings(conn: psycopg.Connection[Any], f: dt.datetime, t: dt.datetime, concurrency: int) -> Check:
    """shared_buffers, max_wal_size, checkpoint_timeout against a backfill of the range: a warning, not a failure."""
    counts = templates.fetch_one(conn, "census/range_count.sql", {"from_ts": f, "to_ts": t}) or {}
    n = int(counts.get("in_range") or 0)
    rate = server_settings.BENCH_SNAPSHOTS_PER_S_PER_WORKER * concurrency
    data, warnings = server_settings.assess(server_settings.read(conn), n, rate)
    head = (
        f"shared_buffers {data['shared_buffers_mb']} MB, max_wal_size {data['max_wal_size_mb']} MB, "
        f"checkpoint_timeout {data['checkpoint_timeout_s']} s for {n:,} snapshot(s)"
    )
    if not warnings:
        return Check("server-settings", PASS, f"{head}: none should slow the backfill", data)
    return Check("server-settings", PASS, f"{head}: {len(warnings)} warning(s)", data, warning="; ".join(warnings))


def _monitoring(cfg: Config) -> Check:
    m = cfg.metrics
    outputs = [
        label
        for label, value in (
            (f"file {m.file}", m.file),
            (f"port {m.port}", m.port),
            (f"pushgateway {redact_dsn(m.pushgateway_url or '')}", m.pushgateway_url),
        )
        if value
    ]
    data: dict[str, Any] = {"outputs": outputs, "prometheus_url": redact_dsn(m.prometheus_url or "") or None}
    if not outputs:
        return Check(
            "monitoring",
            FAIL,
            "no metrics output configured: set metrics.file (or --metrics-file), metrics.port or "
            "metrics.pushgateway_url",
            data,
        )
    detail = "metrics to " + ", ".join(outputs)
    if m.prometheus_url:
        url = m.prometheus_url.rstrip("/") + "/-/ready"
        shown = redact_dsn(url)
        try:
            with urllib.request.urlopen(url, timeout=READY_TIMEOUT_S) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            data["ready"] = False
            return Check("monitoring", FAIL, f"{detail}; Prometheus {shown} not reachable: {reason}", data)
        data["ready"] = status == 200
        if status != 200:
            return Check("monitoring", FAIL, f"{detail}; Prometheus {shown} answered HTTP {status}", data)
        detail += f"; Prometheus ready ({shown})"
        rules = monitoring.rules_loaded(m.prometheus_url)
        data["rules"] = rules.data
        if not rules.ok:
            return Check("monitoring", FAIL, f"{detail}; {rules.detail}", data)
        detail += f"; {rules.detail}"
    return Check("monitoring", PASS, detail, data)
