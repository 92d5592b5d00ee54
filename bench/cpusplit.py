"""`python -m bench.cpusplit`: where a `run`'s CPU goes, server against client, on the bench corpus.

Loads the corpus of `python -m bench` (v1 mix), then `--repeat` times, each in a fresh copy: the bench's
`run --concurrency C` (ramp [C], `bench/runcmd.py`) as a subprocess, with
- client CPU: user + system time of the `starforge-backfill` process tree (RUSAGE_CHILDREN),
- server CPU: user + system time of every process of the local PostgreSQL (the postmaster's reaped
  children, i.e. the run's backends, plus the live ones: walwriter, checkpointer, autovacuum), from /proc,
- wall time; and the cores the run could use (C workers on a machine of os.cpu_count() cores).
Needs the server on this machine (its data directory readable, for postmaster.pid).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import runcmd
from bench.server import corpus_db, server
from starforge_backfill.synthetic import SyntheticSpec

_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _server_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster, its reaped children and its live children."""
    f = _stat(postmaster)
    total = sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            c = _stat(int(child))
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(c[11]) + int(c[12])
    return total / _TCK


def _client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    """Load, then measure `--repeat` runs."""
    parser = argparse.ArgumentParser(prog="python -m bench.cpusplit", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default="", help="YAML appended to the bench's run config")
    parser.add_argument("--dsn", default=None)
    parser.add_argument(
        "--throttle",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="`KEY: VALUE` added to the run's throttle section",
    )
    parser.add_argument("--batches", action="store_true", help="print each run's batches")
    parser.add_argument("--pyspy", default="", help="record the client with py-spy into this file (collapsed stacks)")
    args = parser.parse_args(argv)
    spec = SyntheticSpec(snapshots=args.snapshots, users=max(10, args.snapshots // 6), mix="v1")
    rows: list[dict[str, Any]] = []
    throttle = dict(t.split("=", 1) for t in args.throttle)
    if args.pyspy:
        plain = runcmd.command
        spy = str(Path(sys.executable).parent / "py-spy")
        runcmd.command = lambda *a: [  # type: ignore[assignment]
            spy,
            "record",
            "--format",
            "raw",
            "-r",
            "250",
            "-s",
            "-o",
            args.pyspy,
            "--",
            *plain(*a),
        ]
    with server(args.dsn) as srv:
        with srv.admin() as conn:
            datadir = conn.execute("SHOW data_directory").fetchone()[0]
        postmaster = int(Path(datadir, "postmaster.pid").read_text().split()[0])
        template = f"bench_cpusplit_{os.getpid()}"
        corpus_db(srv, template, spec)
        for i in range(args.repeat):
            name = f"{template}_run"
            dsn = srv.create_db(name, template)
            srv.checkpoint()
            s0, c0 = _server_cpu(postmaster), _client_cpu()
            t0 = time.time()
            out = runcmd.measure(
                dsn, Path(f"/tmp/{name}-art"), args.concurrency, Path(f"/tmp/{name}-logs"), args.config, throttle
            )
            s1, c1 = _server_cpu(postmaster), _client_cpu()
            with psycopg.connect(dsn) as conn:
                batches = conn.execute(
                    "SELECT worker, snapshots, duration_ms, bytes FROM backfill_batches ORDER BY id"
                ).fetchall()
                # batches' transactions start at finished_at (now()), end duration_ms later (about)
                span = conn.execute(
                    "SELECT extract(epoch FROM min(finished_at)), extract(epoch FROM max(finished_at"
                    " + duration_ms * interval '1 ms')), (SELECT extract(epoch FROM started_at) FROM backfill_jobs"
                    " LIMIT 1) FROM backfill_batches"
                ).fetchone()
                guard = conn.execute(
                    "SELECT state, left(reason, 90), count(*), min(allowed_workers)"
                    " FROM guard_readings GROUP BY 1, 2 ORDER BY 1"
                ).fetchall()
            srv.drop(name)
            if args.batches and span[0] is not None:
                first, last, job = (float(x) - t0 for x in span)
                print(
                    f"  timeline: job started +{job:.2f} s, first batch +{first:.2f} s, last batch ends "
                    f"+{last:.2f} s, process ends +{out['seconds']:.2f} s",
                    flush=True,
                )
            if args.batches:
                print(f"  guard readings (state, count, fewest workers): {guard}", flush=True)
            if args.batches:
                print(
                    "  batches (worker, snapshots, ms, MB): "
                    + ", ".join(f"{w} {n} {d} {b / 1e6:.0f}" for w, n, d, b in batches),
                    flush=True,
                )
            row = {"wall": out["seconds"], "server": s1 - s0, "client": c1 - c0, "exit": out["exit_code"]}
            row["busy"] = (row["server"] + row["client"]) / (row["wall"] * (os.cpu_count() or 1))
            rows.append(row)
            print(
                f"run {i + 1}: wall {row['wall']:.2f} s, server CPU {row['server']:.2f} s, client CPU "
                f"{row['client']:.2f} s, both cores busy {100 * row['busy']:.0f}% (exit {row['exit']})",
                flush=True,
            )
    med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "server", "client", "busy")}
    print(
        f"median: wall {med['wall']:.2f} s, server CPU {med['server']:.2f} s, client CPU {med['client']:.2f} s, "
        f"{100 * med['busy']:.0f}% of {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
