"""`python -m bench.statements`: where the ETL's time goes, statement by statement, on the bench corpus.

Loads the same synthetic snapshots as `python -m bench` into a scratch database of its own, applies them
in-process through the ETL core (`apply_in_transaction`, one transaction per batch, newest first like a job)
and prints, per SQL template, the wall time, the server backend's CPU time (read from /proc when the server
runs on this machine) and the number of executions, plus the time the Python reference path took. Use it
to see which statement a change should target; judge a change with paired runs of `python -m bench`, since
this machine's speed drifts between runs.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.server import init_schema, server
from starforge_backfill.etl import pipeline
from starforge_backfill.synthetic import SyntheticSpec, load


def _backend_cpu_s(pid: int) -> float | None:
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():  # the server is elsewhere (or in a container we cannot see)
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Timer:
    """Wrap `conn.execute` to add up time per statement (named by its template's first comment line)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.wall: collections.Counter[str] = collections.Counter()
        self.cpu: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._pid = conn.info.backend_pid
        self._execute = conn.execute
        conn.execute = self._timed  # type: ignore[method-assign]

    def _timed(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        name = text.strip().splitlines()[0][:72]
        cpu0, t0 = _backend_cpu_s(self._pid), time.perf_counter()
        try:
            return self._execute(query, params, **kwargs)
        finally:
            self.wall[name] += time.perf_counter() - t0
            cpu1 = _backend_cpu_s(self._pid)
            if cpu0 is not None and cpu1 is not None:
                self.cpu[name] += cpu1 - cpu0
            self.calls[name] += 1


def main(argv: list[str] | None = None) -> int:
    """Load the corpus, apply it batch by batch, print the per-statement table."""
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=600, help="snapshots to generate (default 600)")
    parser.add_argument("--batch", type=int, default=150, help="snapshots per batch (default 150)")
    parser.add_argument("--oldest-first", action="store_true", help="apply oldest first (jobs go newest first)")
    parser.add_argument("--dsn", help="admin DSN of the server to use (default as `python -m bench`)")
    parser.add_argument("--mix", choices=("v1", "v2"), default="v1", help="synthetic mix of shapes (default v1)")
    args = parser.parse_args(argv)
    spec = SyntheticSpec(snapshots=args.snapshots, users=max(10, args.snapshots // 6), mix=args.mix)
    order = "" if args.oldest_first else " DESC"
    with server(args.dsn) as srv:
        dsn = srv.create_db(f"bench_statements_{os.getpid()}")
        init_schema(dsn)
        with psycopg.connect(dsn) as conn:
            load(conn, spec)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM (FREEZE, ANALYZE)")
            ids = [r[0] for r in conn.execute(f"SELECT id FROM hero_snapshots ORDER BY created_at{order}, id{order}")]
            timer = _Timer(conn)
            reference = [0.0]
            real_reference = pipeline._reference_path

            def timed_reference(*a: Any, **k: Any) -> None:
                t0 = time.perf_counter()
                try:
                    real_reference(*a, **k)
                finally:
                    reference[0] += time.perf_counter() - t0

            pipeline._reference_path = timed_reference  # type: ignore[assignment]
            total = pipeline.BatchResult()
            t0 = time.perf_counter()
            try:
                for i in range(0, len(ids), args.batch):
                    with conn.transaction():
                        total.add(pipeline.apply_in_transaction(conn, ids[i : i + args.batch], pipeline.EtlSettings()))
            finally:
                pipeline._reference_path = real_reference  # type: ignore[assignment]
            wall = time.perf_counter() - t0
    print(
        f"{len(ids)} snapshots in batches of {args.batch}, {'oldest' if args.oldest_first else 'newest'} first:"
        f" {wall:.2f} s; applied {total.applied}, failed {total.failed}, reference path {total.reference_path}"
        f" ({reference[0]:.2f} s); rows written {dict(total.rows_written)}"
    )
    print(f"{'wall s':>8} {'cpu s':>7} {'calls':>5}  statement")
    for name, seconds in timer.wall.most_common():
        cpu = f"{timer.cpu[name]:7.2f}" if timer.cpu else "      -"
        print(f"{seconds:8.3f} {cpu} {timer.calls[name]:5d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
