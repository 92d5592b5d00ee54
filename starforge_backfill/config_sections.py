"""The configuration's sections: what each part of the YAML file may hold, with each key's kind and rules.

`config.py` loads and validates a file into these frozen dataclasses (and re-exports them); the field
metadata (`_m`) is what its validator reads. Split from config.py so that each module stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _m(kind: str, **rules: Any) -> dict[str, Any]:
    """Field metadata: the kind of value a key takes and the rules it must satisfy."""
    return {"kind": kind, **rules}


@dataclass(frozen=True)
class DatabaseConfig:
    """How to reach PostgreSQL and the per-session limits the toolkit sets."""

    dsn: str | None = field(default=None, metadata=_m("str", optional=True, secret=True))
    application_name: str = field(default="starforge-backfill", metadata=_m("str"))
    statement_timeout_s: float = field(default=60.0, metadata=_m("duration"))
    lock_timeout_s: float = field(default=5.0, metadata=_m("duration"))
    connect_timeout_s: float = field(default=10.0, metadata=_m("duration", lo=0, lo_open=True))
    max_connections_share: float = field(default=0.5, metadata=_m("float", lo=0, lo_open=True, hi=1))


@dataclass(frozen=True)
class EtlConfig:
    """What the ETL writes and how it batches snapshots."""

    catalog_policy: str = field(default="placeholder", metadata=_m("enum", choices=("placeholder", "fail")))
    batch_size: int = field(default=250, metadata=_m("int", lo=1, hi=10000))
    batch_max_bytes: int = field(default=64 * 1024**2, metadata=_m("size", lo=1))
    fast_path: bool = field(default=True, metadata=_m("bool"))


@dataclass(frozen=True)
class RetryConfig:
    """Retries of a whole transaction on transient database errors."""

    max_attempts: int = field(default=5, metadata=_m("int", lo=1))
    max_delay_s: float = field(default=60.0, metadata=_m("duration"))
    wait_initial_s: float = field(default=0.05, metadata=_m("duration"))
    wait_max_s: float = field(default=5.0, metadata=_m("duration"))


@dataclass(frozen=True)
class JobConfig:
    """Backfill jobs: who owns them, how they are split into chunks and claimed."""

    owner: str = field(default="data-team", metadata=_m("str"))
    concurrency: int = field(default=1, metadata=_m("int", lo=1))
    chunk_size: int = field(default=2000, metadata=_m("int", lo=1))
    claim_ttl_s: float = field(default=120.0, metadata=_m("duration", lo=0, lo_open=True))
    heartbeat_s: float = field(default=10.0, metadata=_m("duration", lo=0, lo_open=True))


@dataclass(frozen=True)
class ThrottleConfig:
    """Health thresholds that slow down or pause a running backfill."""

    enabled: bool = field(default=True, metadata=_m("bool"))
    max_connections_ratio: float = field(default=0.8, metadata=_m("float", lo=0, lo_open=True, hi=1))
    failure_rate_max: float = field(default=0.01, metadata=_m("float", lo=0, hi=1))
    failure_min_sample: int = field(default=200, metadata=_m("int", lo=1))
    failure_window_s: float = field(default=300.0, metadata=_m("duration", lo=0, lo_open=True))
    long_transaction_s: float = field(default=60.0, metadata=_m("duration", lo=0, lo_open=True))
    replica_lag_max_s: float = field(default=30.0, metadata=_m("duration", lo=0, lo_open=True))
    replica_lag_resume_s: float | None = field(default=None, metadata=_m("duration", optional=True, lo=0))
    sleep_s: float = field(default=1.0, metadata=_m("duration"))
    check_every_s: float = field(default=1.0, metadata=_m("duration"))
    target_batch_s: float = field(default=2.0, metadata=_m("duration", lo=0, lo_open=True))
    min_batch_size: int = field(default=10, metadata=_m("int", lo=1, hi=10000))
    max_batch_size: int = field(default=500, metadata=_m("int", lo=1, hi=10000))
    # the production guard (guard.py; docs/DESIGN.md "The production guard"); 0 switches a signal off
    probe_sql: str = field(default="SELECT 1", metadata=_m("query"))
    baseline_samples: int = field(default=5, metadata=_m("int", lo=1, hi=1000))
    probe_samples: int = field(default=3, metadata=_m("int", lo=1, hi=20))
    probe_window: int = field(default=30, metadata=_m("int", lo=1, hi=1000))
    probe_floor_ms: float = field(default=0.25, metadata=_m("float", lo=0))
    probe_latency_ratio_max: float = field(default=1.5, metadata=_m("float", lo=0))
    probe_latency_ratio_critical: float = field(default=10.0, metadata=_m("float", lo=0))
    probe_min_tps: float = field(default=100.0, metadata=_m("float", lo=0))
    active_sessions_max: int = field(default=64, metadata=_m("int", lo=0))
    waiting_sessions_max: int = field(default=8, metadata=_m("int", lo=0))
    dead_tuples_max: int = field(default=10_000_000, metadata=_m("int", lo=0))
    autovacuum_hold: bool = field(default=True, metadata=_m("bool"))
    wal_bytes_per_s_max: float = field(default=256e6, metadata=_m("float", lo=0))
    hold_recover_s: float = field(default=10.0, metadata=_m("duration"))
    guard_step_s: float = field(default=5.0, metadata=_m("duration"))
    slow_recover_s: float = field(default=15.0, metadata=_m("duration"))
    rebaseline_every_s: float = field(default=60.0, metadata=_m("duration"))
    sample_every_s: float = field(default=5.0, metadata=_m("duration", lo=0, lo_open=True))
    block_check_s: float = field(default=0.25, metadata=_m("duration"))
    nice_ratio_max: float = field(default=1.5, metadata=_m("float", lo=0, hi=100))
    nice_step: float = field(default=1.0, metadata=_m("float", lo=0, lo_open=True, hi=100))


@dataclass(frozen=True)
class GatesConfig:
    """What must pass before a production run, and how concurrency ramps up."""

    require_preflight: bool = field(default=True, metadata=_m("bool"))
    require_canary: bool = field(default=True, metadata=_m("bool"))
    required_approvals: tuple[str, ...] = field(default=("engineering", "sre"), metadata=_m("strs"))
    ramp: tuple[int, ...] = field(default=(1, 2, 4), metadata=_m("ints", item_lo=1, ascending=True))
    ramp_step_s: float = field(default=60.0, metadata=_m("duration"))


@dataclass(frozen=True)
class CanaryConfig:
    """The canary: a narrow slice backfilled at low concurrency and watched."""

    observe_s: float = field(default=60.0, metadata=_m("duration", lo=0, lo_open=True))
    concurrency: int = field(default=1, metadata=_m("int", lo=1))
    users: int = field(default=500, metadata=_m("int", lo=1))
    recent_s: float = field(default=7 * 86400.0, metadata=_m("duration", lo=0, lo_open=True))


@dataclass(frozen=True)
class SampleConfig:
    """How the dry-run sample is picked across payload-size buckets."""

    buckets: tuple[int, ...] = field(default=(3, 3, 4), metadata=_m("ints", item_lo=0))
    include_bad: int = field(default=5, metadata=_m("int", lo=0))
    seed: int = field(default=42, metadata=_m("int"))


@dataclass(frozen=True)
class MetricsConfig:
    """Where Prometheus metrics go and where gate queries read them."""

    file: str | None = field(default=None, metadata=_m("str", optional=True, suffix=".prom"))
    port: int | None = field(default=None, metadata=_m("int", optional=True, lo=1, hi=65535))
    pushgateway_url: str | None = field(default=None, metadata=_m("url", optional=True, secret=True))
    prometheus_url: str | None = field(default=None, metadata=_m("url", optional=True, secret=True))
    job_name: str = field(default="starforge_backfill", metadata=_m("str"))


@dataclass(frozen=True)
class LoggingConfig:
    """Human or JSON logs, and how much."""

    format: str = field(default="human", metadata=_m("enum", choices=("human", "json")))
    level: str = field(default="info", metadata=_m("enum", choices=("debug", "info", "warning", "error")))


@dataclass(frozen=True)
class QuarantineConfig:
    """Copies of failing snapshots' redacted payloads in S3 (the local copy under quarantine/ stays the source
    of truth). Credentials come from the standard AWS chain (env, profile, instance role), never from here."""

    s3_url: str | None = field(default=None, metadata=_m("s3url", optional=True))
    endpoint_url: str | None = field(default=None, metadata=_m("url", optional=True, secret=True))
    region: str | None = field(default=None, metadata=_m("str", optional=True))
    upload_timeout_s: float = field(default=10.0, metadata=_m("duration", lo=0, lo_open=True))
    upload_attempts: int = field(default=3, metadata=_m("int", lo=1, hi=20))
    drain_s: float = field(default=60.0, metadata=_m("duration"))


@dataclass(frozen=True)
class EventsConfig:
    """The ETL's event outbox (etl_events): whether batches write it, how long rows are kept, NOTIFY."""

    enabled: bool = field(default=True, metadata=_m("bool"))
    retain_s: float = field(default=7 * 86400.0, metadata=_m("duration", lo=0, lo_open=True))
    notify: bool = field(default=False, metadata=_m("bool"))
    prune_batch: int = field(default=1000, metadata=_m("int", lo=1, hi=100000))


@dataclass(frozen=True)
class ApiToken:
    """One bearer token of the admin API: a name (recorded as the operator), a scope and the token's sha256."""

    name: str
    scope: str  # "read" (GETs) or "admin" (everything)
    sha256: str  # lower-case hex SHA-256 of the token; the token itself is never stored


@dataclass(frozen=True)
class ApiConfig:
    """`serve`, the admin API: where it listens and the tokens it accepts (as hashes)."""

    listen: str = field(default="127.0.0.1:8470", metadata=_m("listen"))
    tokens: tuple[ApiToken, ...] = field(default=(), metadata=_m("tokens"))

    def host_port(self) -> tuple[str, int]:
        """`listen` split into (host, port); `[::1]:8470` gives ("::1", 8470)."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)
