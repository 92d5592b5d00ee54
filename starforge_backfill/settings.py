"""The one adapter from a `Config` to the plain settings the core takes (the core never reads a Config).

`etl()` for the ETL core, `retry()` for `db.retrying`, `throttle()` for the health throttle and `engine()`
for a chunk worker: a config key reaches the code that uses it only through here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg
from starforge_backfill.engine import EngineOptions
from starforge_backfill.etl.pipeline import EtlSettings
from starforge_backfill.guard import GUARD_FIELDS, GuardSettings, ProductionGuard
from starforge_backfill.throttle import ThrottleSettings


def etl(cfg: Config, *, quarantine_dir: Path | None = None, job_id: str | None = None) -> EtlSettings:
    """How the core applies snapshots under this config; quarantine copies go to `quarantine_dir`."""
    return EtlSettings(
        catalog_policy=cfg.etl.catalog_policy,
        fast_path=cfg.etl.fast_path,
        quarantine_dir=quarantine_dir,
        job_id=job_id,
    )


def retry(cfg: Config) -> dict[str, Any]:
    """`db.retrying()` keyword arguments from the config's retry section."""
    r = cfg.retry
    return {
        "max_attempts": r.max_attempts,
        "max_delay_s": r.max_delay_s,
        "wait_initial_s": r.wait_initial_s,
        "wait_max_s": r.wait_max_s,
    }


def throttle(cfg: Config) -> ThrottleSettings:
    """The health throttle's thresholds from the config's throttle section."""
    t = cfg.throttle
    return ThrottleSettings(
        max_connections_ratio=t.max_connections_ratio,
        failure_rate_max=t.failure_rate_max,
        failure_min_sample=t.failure_min_sample,
        failure_window_s=t.failure_window_s,
        long_transaction_s=t.long_transaction_s,
        replica_lag_max_s=t.replica_lag_max_s,
        replica_lag_resume_s=t.replica_lag_max_s / 2 if t.replica_lag_resume_s is None else t.replica_lag_resume_s,
        sleep_s=t.sleep_s,
        check_every_s=t.check_every_s,
        app_prefix=cfg.database.application_name,
    )


def guard(cfg: Config) -> GuardSettings:
    """The production guard's thresholds: the throttle's plus the guard's own (same names as the config's)."""
    t = cfg.throttle
    own = {name: getattr(t, name) for name in GUARD_FIELDS}
    return GuardSettings(**dataclasses.asdict(throttle(cfg)), **own)


def production_guard(cfg: Config, job_id: str) -> ProductionGuard:
    """The guard of one job in this process, on connections of its own (named like the job's workers, so the
    guard never counts the backfill's sessions as production's)."""
    app = f"{cfg.database.application_name}:{job_id}:guard"
    return ProductionGuard(
        guard(cfg),
        job_id,
        lambda: connect_cfg(cfg, autocommit=True, application_name=app),
        max_batch_size=cfg.throttle.max_batch_size,
    )


def engine(cfg: Config, batch_size: int, folder: Path, job_id: str, *, fixed: bool = False) -> EngineOptions:
    """A chunk worker's options for job `job_id`, whose artifacts live in `folder`.

    `fixed`: every batch holds `batch_size` snapshots (only `etl.batch_max_bytes` cuts one shorter). Else the
    size starts there and adapts toward `throttle.target_batch` within [min_batch_size, max_batch_size]."""
    t = cfg.throttle
    adaptive = t.enabled and not fixed
    return EngineOptions(
        etl=etl(cfg, quarantine_dir=folder / "quarantine", job_id=job_id),
        batch_size=batch_size,
        batch_max_bytes=cfg.etl.batch_max_bytes,
        claim_ttl_s=cfg.job.claim_ttl_s,
        heartbeat_s=cfg.job.heartbeat_s,
        retry=retry(cfg),
        min_batch_size=t.min_batch_size if adaptive else batch_size,
        max_batch_size=t.max_batch_size if adaptive else batch_size,
        target_batch_s=t.target_batch_s if adaptive else 0.0,
        throttle=production_guard(cfg, job_id) if cfg.throttle.enabled else None,
    )
