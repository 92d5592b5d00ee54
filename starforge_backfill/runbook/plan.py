"""Plan: the runbook's capacity estimate, `T_estimate = N * t_avg / C`, from measured figures.

N is what a `run` of the range would take (same selector: not processed yet, no earlier error unless
asked); t_avg is the newest `dry-run` gate's for this config fingerprint unless given. C is weighed
against the backfill's share of `max_connections` (each worker holds one connection, plus one control
connection). The batch size follows the runbook's "Batch sizing": 50-500 snapshots a transaction scaled
down with payload size, 10-50 when the p95 payload is 2 MB or more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

from starforge_backfill import capacity, jobs, templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, the_row, translate_errors
from starforge_backfill.errors import UsageError
from starforge_backfill.runbook import gates, server_settings, step_files
from starforge_backfill.timerange import parse_range

CANDIDATES = (1, 2, 4, 8)
LARGE_PAYLOAD_BYTES = 2_000_000
BATCH_NORMAL = (50, 500)
BATCH_LARGE = (10, 50)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The runtime at one concurrency."""

    concurrency: int
    t_estimate_s: float
    connections: int
    within_budget: bool
    meets_target: bool | None

    def to_json(self) -> dict[str, Any]:
        """JSON shape of an estimate."""
        return dataclasses.asdict(self) | {"t_estimate_h": round(self.t_estimate_s / 3600, 3)}


def estimate(n: int, t_avg_s: float, concurrency: int) -> float:
    """The runbook's formula: `T_estimate = (N * t_avg) / C`, in seconds."""
    if concurrency < 1:
        raise UsageError("concurrency must be at least 1")
    return n * t_avg_s / concurrency


def recommend_batch_size(avg_bytes: float | None, p95_bytes: float | None, batch_max_bytes: int, default: int) -> int:
    """Snapshots per transaction: about `batch_max_bytes` of payload, clamped to 10-50 when the p95 payload
    is >= 2 MB, else to 50-500; rounded down to a multiple of 10 (5 below 50). `default` without sizes."""
    if not avg_bytes or not p95_bytes:
        return default
    large = p95_bytes >= LARGE_PAYLOAD_BYTES
    lo, hi = BATCH_LARGE if large else BATCH_NORMAL
    per = p95_bytes if large else avg_bytes
    size = max(lo, min(hi, int(batch_max_bytes // max(per, 1))))
    step = 10 if size >= 50 else 5
    return max(lo, size - size % step)


def server_cores(host: str | None) -> int | None:
    """The database server's CPU cores when it runs on this machine (a Unix socket or a loopback address),
    else None: PostgreSQL does not report its host's cores over SQL."""
    if host is None or not (host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")):
        return None
    return os.cpu_count()


def recommend_concurrency(
    n: int, t_avg_s: float, candidates: list[int], budget_c: int, target_s: float | None, cores: int | None = None
) -> tuple[int, str]:
    """Nothing to do: 1. Else the smallest C meeting the target within the connection budget (and the server's
    cores, when known), else the largest candidate within them."""
    if n <= 0:
        return 1, "nothing to do: no snapshot of the range waits for a run"
    if cores is not None and cores < budget_c:
        budget_c = max(1, cores)
        within = f"the server's {cores} cores"
    else:
        within = "the connection budget"
    fitting = [c for c in candidates if c <= budget_c] or [1]
    if target_s is not None:
        for c in fitting:
            if estimate(n, t_avg_s, c) <= target_s:
                return c, f"the smallest C that meets the {target_s / 3600:g} h target"
        needed = max(1, math.ceil(n * t_avg_s / target_s)) if target_s > 0 else budget_c
        if needed <= budget_c:
            return needed, f"C={needed} meets the {target_s / 3600:g} h target within {within}"
        best = max(fitting)
        return best, (
            f"the {target_s / 3600:g} h target needs C={needed}, beyond {within} ({budget_c});"
            f" the largest candidate within it"
        )
    return max(fitting), f"the largest candidate within {within}; no --target-hours given"


@dataclasses.dataclass
class PlanResult:
    """The plan's inputs, estimates and recommendations."""

    from_ts: dt.datetime
    to_ts: dt.datetime
    n: int
    t_avg_s: float
    t_avg_source: str
    sizes: dict[str, Any]
    capacity: capacity.Capacity
    estimates: list[Estimate]
    target_hours: float | None
    recommended_concurrency: int
    concurrency_reason: str
    recommended_batch_size: int
    notes: list[str]
    server_cores: int | None = None  # known when the server runs on this machine
    artifact: Path | None = None

    @property
    def target_met(self) -> bool | None:
        """Whether the recommended C meets --target-hours (None without a target)."""
        if self.target_hours is None:
            return None
        return estimate(self.n, self.t_avg_s, self.recommended_concurrency) <= self.target_hours * 3600

    def to_json(self) -> dict[str, Any]:
        """`plan --json` (and the body of plan.json)."""
        rec_t = estimate(self.n, self.t_avg_s, self.recommended_concurrency)
        return {
            "step": "plan",
            "from_ts": self.from_ts.isoformat(),
            "to_ts": self.to_ts.isoformat(),
            "n": self.n,
            "t_avg_s": self.t_avg_s,
            "t_avg_source": self.t_avg_source,
            "sizes": self.sizes,
            "connections": {
                "max_connections": self.capacity.max_connections,
                "in_use": self.capacity.in_use,
                "max_connections_share": self.capacity.share,
                "budget": self.capacity.budget,
                "max_concurrency": self.capacity.max_concurrency,
                "server_cores": self.server_cores,
            },
            "estimates": [e.to_json() for e in self.estimates],
            "target_hours": self.target_hours,
            "target_met": self.target_met,
            "recommended": {
                "concurrency": self.recommended_concurrency,
                "reason": self.concurrency_reason,
                "t_estimate_s": round(rec_t, 3),
                "t_estimate_h": round(rec_t / 3600, 3),
                "batch_size": self.recommended_batch_size,
            },
            "notes": self.notes,
            "artifact": str(self.artifact) if self.artifact else None,
        }


def plan(
    cfg: Config,
    *,
    from_ts: str | dt.datetime | None,
    to_ts: str | dt.datetime | None,
    concurrency: int | None = None,
    target_hours: float | None = None,
    t_avg_s: float | None = None,
    reprocess: bool = False,
    retry_failed: bool = False,
) -> PlanResult:
    """Estimate the run of a range and recommend C and the batch size; writes `<runbook dir>/plan.json`."""
    f, t = parse_range(from_ts, to_ts)
    if concurrency is not None and concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if target_hours is not None and target_hours <= 0:
        raise UsageError("--target-hours must be > 0")
    if t_avg_s is not None and t_avg_s <= 0:
        raise UsageError("--t-avg must be > 0 seconds")
    fp = cfg.fingerprint()
    selector = jobs.Selector(from_ts=f, to_ts=t, reprocess=reprocess, retry_failed=retry_failed)
    notes: list[str] = []
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        n, total, avg, p95, biggest = the_row(templates.execute(conn, "runbook/wanted_stats.sql", selector.params()))
        cap = capacity.read(conn, cfg.database.max_connections_share)
        cores = server_cores(conn.info.host)
        srv = server_settings.read(conn)
        db = gates.database_identity(conn)
        if t_avg_s is not None:
            source = "--t-avg"
        else:
            gate = gates.latest_gate(conn, "dry-run", fp)
            measured = (gate or {}).get("details", {}).get("t_avg_s") if gate else None
            if not measured:
                raise UsageError(
                    f"no dry-run with a measured t_avg for this config (fingerprint {fp[:12]})",
                    hint="run `starforge-backfill dry-run` first, or pass --t-avg SECONDS",
                )
            assert gate is not None  # measured came from it
            t_avg_s = float(measured)
            source = f"dry-run gate of {gate['created_at']:%Y-%m-%d %H:%M:%S} UTC (n={gate['details'].get('n')})"
            if not gate["passed"]:
                notes.append("the newest dry-run for this config failed: its t_avg may not be representative")
    budget, budget_c = cap.budget, cap.max_concurrency
    target_s = target_hours * 3600 if target_hours is not None else None
    cands = sorted(set(CANDIDATES) | ({concurrency} if concurrency else set()))
    rec_c, reason = recommend_concurrency(int(n), t_avg_s, cands, budget_c, target_s, cores)
    if rec_c not in cands:
        cands = sorted({*cands, rec_c})
    estimates = [
        Estimate(
            concurrency=c,
            t_estimate_s=round(estimate(int(n), t_avg_s, c), 3),
            connections=capacity.connections_for(c),
            within_budget=cap.fits(c),
            meets_target=None if target_s is None else estimate(int(n), t_avg_s, c) <= target_s,
        )
        for c in cands
    ]
    if budget_c < 1:
        notes.append(f"the connection budget ({budget} of {cap.max_connections}) leaves no room for a worker")
    if concurrency and not cap.fits(concurrency):
        needs = capacity.connections_for(concurrency)
        notes.append(f"--concurrency {concurrency} needs {needs} connections, over the budget of {budget}")
    if cap.in_use + capacity.connections_for(rec_c) > cap.max_connections * cfg.throttle.max_connections_ratio:
        notes.append(
            f"{cap.in_use} connections already in use: C={rec_c} would pass the throttle's"
            f" {cfg.throttle.max_connections_ratio:.0%} of max_connections"
        )
    notes.append("t_avg comes from snapshots applied one per transaction: batched runs are usually faster")
    _, slow = server_settings.assess(srv, int(n), rec_c / t_avg_s)
    notes.extend(f"server setting: {w}" for w in slow)
    sizes = {
        "total_bytes": int(total) if total is not None else 0,
        "avg_bytes": round(float(avg)) if avg is not None else None,
        "p95_bytes": round(float(p95)) if p95 is not None else None,
        "max_bytes": int(biggest) if biggest is not None else None,
    }
    batch = recommend_batch_size(avg, p95, cfg.etl.batch_max_bytes, cfg.etl.batch_size)
    if not n:
        notes.insert(0, "nothing to do: every snapshot of the range is processed (or failed: --retry-failed)")
    result = PlanResult(
        from_ts=f,
        to_ts=t,
        n=int(n),
        t_avg_s=t_avg_s,
        t_avg_source=source,
        sizes=sizes,
        capacity=cap,
        estimates=estimates,
        target_hours=target_hours,
        recommended_concurrency=rec_c,
        concurrency_reason=reason,
        recommended_batch_size=batch,
        notes=notes,
        server_cores=cores,
    )
    result.artifact = step_files.write_step(cfg, db, "plan", "plan", result.to_json())
    return result
