"""Server settings that make a backfill of a given size slow, and by how much (measured by bench.scale).

Three settings, each against what a backfill of N snapshots needs (bench/README.md, "Scale"):
- `shared_buffers` against the working set the merges probe: the normalized tables (heap and indexes) as
  they will be at the end, their current size plus N times the bench's bytes per snapshot. Past it, each
  batch's index probes read from the OS cache (or disk) instead of shared buffers.
- `max_wal_size` against the WAL the backfill writes in one `checkpoint_timeout`: when smaller, checkpoints
  come by WAL volume, more often than the timeout, and every page first written after each one is logged
  whole again (full_page_writes).
- `checkpoint_timeout` below PostgreSQL's default (5 min): the same, by the clock.
Used by preflight (the `server-settings` item: a warning, never a failure) and plan (notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from starforge_backfill import templates

MB = 1024 * 1024
# bench.scale's corpus (bench/README.md, "Scale"; 20,000-100,000 snapshots, default settings): the
# normalized tables after the run (heap, indexes, dead row versions), the WAL a run writes, the throughput
# of one worker (rounded; the loaded 2-core VM gave 500-1,400).
BENCH_TABLE_BYTES_PER_SNAPSHOT = 1_500
BENCH_WAL_BYTES_PER_SNAPSHOT = 4_600
BENCH_SNAPSHOTS_PER_S_PER_WORKER = 1_000.0
# the measured effect of each setting (bench/README.md, "Scale", settings table: 30,000 snapshots, C=2,
# run time relative to the COPY floor of the same moment)
SHARED_BUFFERS_SLOWDOWN = (
    "measured: with the normalized tables ~20x shared_buffers, the bench's run took 1.9x as long "
    "(relative to its COPY floor)"
)
WAL_SLOWDOWN = (
    "measured: max_wal_size 32 MB instead of 1 GB made the bench's run write 28% more WAL (11 requested "
    "checkpoints) and take 1.16x as long (relative to its COPY floor)"
)
CHECKPOINT_DEFAULT_S = 300


@dataclass(frozen=True)
class ServerSettings:
    """The readings (bytes, seconds)."""

    shared_buffers: int
    max_wal_size: int
    checkpoint_timeout_s: int
    tables_bytes: int

    def to_json(self) -> dict[str, Any]:
        """JSON shape: the readings in MB and seconds."""
        return {
            "shared_buffers_mb": round(self.shared_buffers / MB),
            "max_wal_size_mb": round(self.max_wal_size / MB),
            "checkpoint_timeout_s": self.checkpoint_timeout_s,
            "tables_mb": round(self.tables_bytes / MB, 1),
        }


def read(conn: psycopg.Connection[Any]) -> ServerSettings:
    """The server's settings and the current size of the normalized tables."""
    row = templates.fetch_one(conn, "runbook/server_settings.sql") or {}
    return ServerSettings(
        int(row["shared_buffers"]), int(row["max_wal_size"]), int(row["checkpoint_timeout_s"]), int(row["tables_bytes"])
    )


def assess(s: ServerSettings, n: int, snapshots_per_s: float) -> tuple[dict[str, Any], list[str]]:
    """Estimates for a backfill of `n` snapshots at `snapshots_per_s`, and one warning per slow setting."""
    working_set = s.tables_bytes + n * BENCH_TABLE_BYTES_PER_SNAPSHOT
    wal_total = n * BENCH_WAL_BYTES_PER_SNAPSHOT
    wal_per_timeout = BENCH_WAL_BYTES_PER_SNAPSHOT * snapshots_per_s * s.checkpoint_timeout_s
    data = s.to_json() | {
        "snapshots": n,
        "snapshots_per_s": round(snapshots_per_s, 1),
        "working_set_mb": round(working_set / MB),
        "wal_total_mb": round(wal_total / MB),
        "wal_per_checkpoint_timeout_mb": round(wal_per_timeout / MB),
    }
    warnings = []
    if working_set > s.shared_buffers:
        warnings.append(
            f"shared_buffers {s.shared_buffers // MB} MB < the ~{working_set // MB} MB of normalized tables the "
            f"merges probe by the end (now {s.tables_bytes // MB} MB + {n:,} snapshots); {SHARED_BUFFERS_SLOWDOWN}"
        )
    if wal_per_timeout > s.max_wal_size and wal_total > s.max_wal_size:
        every = s.max_wal_size / max(BENCH_WAL_BYTES_PER_SNAPSHOT * snapshots_per_s, 1.0)
        warnings.append(
            f"max_wal_size {s.max_wal_size // MB} MB < the ~{wal_per_timeout // MB} MB of WAL the backfill writes "
            f"per checkpoint_timeout ({s.checkpoint_timeout_s} s): a checkpoint every ~{every:.0f} s instead; "
            f"{WAL_SLOWDOWN}"
        )
    if s.checkpoint_timeout_s < CHECKPOINT_DEFAULT_S and wal_total > s.max_wal_size / 4:
        warnings.append(
            f"checkpoint_timeout {s.checkpoint_timeout_s} s is below PostgreSQL's default ({CHECKPOINT_DEFAULT_S} s):"
            " more checkpoints, more full-page images in the WAL"
        )
    return data, warnings
