"""`python -m bench.verify_full` (also run by `make bench`): `verify --full` against the backfill's own `run` on
the same data, as a speed ratio (target: verify --full at >= 0.5 of the run's throughput).

The synthetic v1 corpus of `python -m bench` is loaded once into a template database (VACUUM (FREEZE,
ANALYZE)d). Then, `--repeat` times, in a fresh copy: `starforge-backfill run` over everything (a subprocess,
timed), then `starforge-backfill verify --job-id <that job> --full --sample-users 0` (a subprocess, timed)
over the rows the run just wrote; the copy is dropped. Each pair gives a ratio run seconds / verify seconds
(= verify's throughput / run's); the median pair is reported, by wall time (both with the interpreter's
start) and by the full check's own time (`seconds` in the check's data: the re-derivation and diff only).
It writes `bench/results/verify-full-<stamp>.json`. It reports, it does not gate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import runcmd
from bench.server import corpus_db, server
from starforge_backfill.synthetic import SyntheticSpec

DATA_DIR = Path(__file__).resolve().parent / "data"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.5


def _log(message: str) -> None:
    print(f"[bench.verify_full {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _verify(dsn: str, artifacts: Path, config: Path, job_id: str) -> dict[str, Any]:
    script = Path(sys.executable).parent / "starforge-backfill"
    cmd = [str(script), "-c", str(config), "--dsn", dsn, "--artifacts-dir", str(artifacts), "--json", "verify"]
    cmd += ["--job-id", job_id, "--full", "--sample-users", "0"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    full = next((c for c in doc.get("checks", []) if c["name"] == "full"), None)
    return {
        "seconds": seconds,
        "exit_code": proc.returncode,
        "passed": doc.get("passed"),
        "full_seconds": full["data"]["seconds"] if full else None,
        "full": {k: v for k, v in (full or {}).get("data", {}).items() if k != "findings"},
        "stderr_tail": proc.stderr[-1500:] if proc.returncode else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure, print the ratios, write the results file."""
    parser = argparse.ArgumentParser(prog="python -m bench.verify_full", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=600, help="snapshots to generate (default 600)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="run + verify pairs (default 3)")
    parser.add_argument("--dsn", default=None, help="admin DSN (default as `python -m bench`)")
    args = parser.parse_args(argv)
    pid, started_at = os.getpid(), datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    spec = SyntheticSpec(snapshots=args.snapshots, users=max(10, args.snapshots // 6), seed=args.seed, mix="v1")
    workdir = DATA_DIR / f"verify-full-{stamp}-{pid}"
    pairs: list[dict[str, Any]] = []
    with server(args.dsn) as srv:
        template = f"bench_vf_data_{pid}"
        _, stats = corpus_db(srv, template, spec)
        _log(f"loaded {stats.snapshots} snapshots, {stats.bytes / 1e6:.1f} MB of JSON")
        for i in range(args.repeat):
            db = f"bench_vf_{i}_{pid}"
            dsn = srv.create_db(db, template)
            srv.checkpoint()
            run = runcmd.measure(dsn, workdir / f"artifacts-{i}", 1, workdir / f"logs-{i}")
            job_id = (run.get("report") or {}).get("job_id")
            if run["exit_code"] != 0 or not job_id:
                _log(f"run exited {run['exit_code']}: {run.get('stderr_tail', '')[-300:]}")
                return 1
            srv.checkpoint()
            ver = _verify(dsn, workdir / f"artifacts-{i}", workdir / f"logs-{i}" / "bench-config.yaml", job_id)
            if ver["exit_code"] != 0:
                _log(f"verify --full exited {ver['exit_code']}: {ver['stderr_tail']}")
                return 1
            pair = {
                "run_s": round(run["seconds"], 3),
                "verify_s": round(ver["seconds"], 3),
                "full_check_s": ver["full_seconds"],
                "ratio_wall": round(run["seconds"] / ver["seconds"], 3),
                "full": ver["full"],
            }
            pairs.append(pair)
            _log(
                f"pair {i + 1}: run {pair['run_s']} s, verify --full {pair['verify_s']} s "
                f"(full check {pair['full_check_s']} s): ratio {pair['ratio_wall']}"
            )
            srv.drop(db)
    ratio = statistics.median(p["ratio_wall"] for p in pairs)
    check_ratio = statistics.median(p["run_s"] / p["full_check_s"] for p in pairs if p["full_check_s"])
    load1 = os.getloadavg()[0]
    result = {
        "generated_at": started_at.isoformat(),
        "snapshots": spec.snapshots,
        "users": spec.users,
        "pairs": pairs,
        "ratio_wall_median": round(ratio, 3),
        "ratio_full_check_median": round(check_ratio, 3),
        "target": TARGET,
        "load_average_1m": round(load1, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"verify-full-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"verify --full vs run on {spec.snapshots} snapshots ({spec.users} users), median of {len(pairs)} pairs:")
    print(
        f"  run {statistics.median(p['run_s'] for p in pairs):.2f} s, verify --full "
        f"{statistics.median(p['verify_s'] for p in pairs):.2f} s (full check alone "
        f"{statistics.median(p['full_check_s'] or 0 for p in pairs):.2f} s)"
    )
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(
        f"  speed ratio verify/run: {ratio:.2f} wall, {check_ratio:.2f} full check alone "
        f"({verdict} the target {TARGET}); load average {load1:.1f}"
    )
    _log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
