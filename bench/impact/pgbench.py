"""pgbench as the production read load: init a small scale, run it at a fixed rate with a per-transaction log,
and cut that log into windows of p50/p90/p99 latency.

The latency pgbench logs with `--rate` is measured from each transaction's *scheduled* start, so a stall of
the server delays every transaction behind it and shows in the percentiles (no coordinated omission).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

MAX_SECONDS = 900  # -T cap: a pgbench this bench forgets still ends


def binary() -> str:
    """The pgbench executable (PATH, else the newest /usr/lib/postgresql/*/bin)."""
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    raise RuntimeError("pgbench not found (it ships with PostgreSQL: apt-get install postgresql-client)")


def libpq_env(dsn: str) -> tuple[dict[str, str], str]:
    """(environment with PGHOST/PGPORT/PGUSER/PGPASSWORD, dbname) for a libpq DSN: pgbench takes no URI."""
    params = conninfo_to_dict(dsn)
    env = dict(os.environ)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD")):
        if params.get(key):
            env[var] = str(params[key])
    return env, str(params.get("dbname") or "postgres")


def initialize(dsn: str, scale: int) -> float:
    """`pgbench -i -s scale` (quiet, with its VACUUM); returns the seconds it took."""
    env, db = libpq_env(dsn)
    started = time.perf_counter()
    proc = subprocess.run(
        [binary(), "-i", "-q", "-s", str(scale), db], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench -i failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Load:
    """What pgbench runs: the built-in script (`select-only` = -S, or `tpcb-like`), rate, clients, threads."""

    script: str = "select-only"
    rate: int = 1000
    clients: int = 4
    threads: int = 2

    def args(self) -> list[str]:
        return ["-b", self.script, "-R", str(self.rate), "-c", str(self.clients), "-j", str(self.threads)]


@dataclass
class Running:
    """A pgbench started in the background, logging every transaction under `prefix`."""

    proc: subprocess.Popen[bytes]
    prefix: Path
    started: float  # time.time() just before it started
    stderr: Path = field(default_factory=Path)

    def stop(self) -> int:
        """SIGTERM (not SIGINT: a shell's background job has SIGINT ignored), then wait. pgbench does not
        flush its logs on a signal: what it loses is the last few hundred milliseconds (one stdio buffer per
        thread), so stop it a second after the window."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the transactions that completed in [start, end) (epoch seconds)."""
        return window(read_logs(self.prefix), start, end)


def start(dsn: str, load: Load, logdir: Path, name: str) -> Running:
    """Start pgbench (-n: no vacuum of its own; -T capped) with `-l` into logdir/name.*"""
    env, db = libpq_env(dsn)
    logdir.mkdir(parents=True, exist_ok=True)
    prefix = logdir / name
    for old in logdir.glob(f"{name}.*"):
        old.unlink()
    err = logdir / f"{name}.stderr"
    with err.open("wb") as stderr:
        started = time.time()
        proc = subprocess.Popen(
            [binary(), "-n", *load.args(), "-T", str(MAX_SECONDS), "-l", f"--log-prefix={prefix}", db],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return Running(proc, prefix, started, err)


def read_logs(prefix: Path) -> list[tuple[float, float]]:
    """(completion epoch seconds, latency ms) of every complete line in prefix.<pid>[.<thread>]."""
    out: list[tuple[float, float]] = []
    for path in sorted(prefix.parent.glob(f"{prefix.name}.*")):
        if path.suffix == ".stderr":
            continue
        out.extend(parse(path.read_text(errors="replace").splitlines()))
    return out


def parse(lines: Iterable[str]) -> list[tuple[float, float]]:
    """pgbench `-l` lines: `client_id transaction_no time script_no time_epoch time_us [schedule_lag]`.
    `time` is the latency in µs (from the scheduled start with --rate), or `skipped` (with --latency-limit);
    skipped and torn lines (the last one of a log cut by a signal) are left out."""
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or not all(f.isdigit() for f in fields[2:6]):
            continue
        out.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1000.0))
    return out


def window(entries: Iterable[tuple[float, float]], start: float, end: float) -> list[float]:
    """Latencies of the entries that completed in [start, end)."""
    return [lat for at, lat in entries if start <= at < end]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def stats(latencies: list[float], seconds: float) -> dict[str, Any]:
    """Count, throughput and p50/p90/p99 (ms) of one window."""
    if not latencies:
        return {"transactions": 0, "tps": 0.0, "p50": None, "p90": None, "p99": None}
    return {
        "transactions": len(latencies),
        "tps": round(len(latencies) / seconds, 1) if seconds > 0 else None,
        **{f"p{p}": round(percentile(latencies, p), 3) for p in (50, 90, 99)},
        "max": round(max(latencies), 3),
    }
