"""`python -m bench` (`make bench`): floor vs the project's `run` vs a naive loop, on the same synthetic data,
and `run` on the v2 mix of shapes beside `run` on the v1 mix.

One process, one server, one database per method. floor, run and naive use the v1 mix (`SyntheticSpec(mix=
"v1")`, the corpus of the earlier sessions' figures); run_v2 the same spec in the v2 mix (contract v2's real
shapes: envelopes, keyed sections, ...). The synthetic snapshots of each mix are generated and loaded once
(`synthetic.load`) into a data database that is then VACUUM (FREEZE, ANALYZE)d, and every method gets a fresh
`CREATE DATABASE bench_<method>_<pid> TEMPLATE <it>`, so each starts from identical, analyzed tables. All of
them are dropped at the end (`--keep` keeps them and bench/data/). The bench reports; it does not gate: it
exits 0 when every method ran, whatever the targets say, and 1 when a method could not be measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floor, naive, report, runcmd, tables
from bench.server import corpus_db, server
from starforge_backfill.synthetic import SyntheticSpec

DATA_DIR = Path(__file__).resolve().parent / "data"
METHODS = ("floor", "run", "run_noevents", "run_v2", "naive")
NO_EVENTS = "events:\n  enabled: false\n"


def _log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=600, help="snapshots to generate (default 600)")
    parser.add_argument("--concurrency", type=int, default=1, help="`run --concurrency` (default 1)")
    parser.add_argument(
        "--dsn",
        default=None,
        help="admin DSN of the server to use (default $STARFORGE_BENCH_DSN, else "
        "127.0.0.1:5432 if it answers, else an embedded PostgreSQL)",
    )
    parser.add_argument("--users", type=int, default=None, help="distinct namecodes (default snapshots/6)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of floor,run,run_v2,naive (default all)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="measure floor and run this many times each, alternately (default 3): each is reported by its "
        "median, and floor/run by the median of the adjacent pairs' ratios",
    )
    parser.add_argument(
        "--throttle",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add `KEY: VALUE` to the run methods' throttle section (e.g. probe_latency_ratio_max=0 to measure "
        "without the guard's probe signal); the default config is left as it is",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and bench/data/ afterwards")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if bad := [t for t in args.throttle if "=" not in t]:
        parser.error(f"--throttle takes KEY=VALUE, not {bad[0]!r}")
    args.throttle = dict(t.split("=", 1) for t in args.throttle)
    if unknown := set(args.methods) - set(METHODS):
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    if args.snapshots < 1 or args.concurrency < 1 or args.repeat < 1:
        parser.error("--snapshots, --concurrency and --repeat must be >= 1")
    return args


def _rates(m: dict[str, Any], snapshots: int, rows: int) -> dict[str, Any]:
    seconds = m["seconds"]
    return {
        **m,
        "seconds": round(seconds, 3),
        "snapshots_per_s": round(snapshots / seconds, 1),
        "rows_per_s": round(rows / seconds),
    }


def _run_method(
    name: str, srv: Any, template: str, pid: int, body: Any, tag: str = "", keep: bool = False
) -> dict[str, Any]:
    """Fresh database from the template, a checkpoint, then the measurement; errors become a result. The
    database is dropped right after (unless `keep`): autovacuum of the rows a method wrote would otherwise
    take CPU from the next method's measurement (seen once: a 0.65 s floor, then 1.1 s after runs)."""
    try:
        db = f"bench_{name}_{pid}"
        dsn = srv.create_db(db, template)
        srv.checkpoint()
        _log(f"{name}{tag}: measuring")
        result = body(dsn)
        _log(f"{name}{tag}: {result['seconds']:.2f} s")
        if not keep:
            srv.drop(db)
        return result
    except runcmd.RunUnavailable as exc:
        _log(f"{name}: ERROR {exc}")
        return {"error": str(exc)}
    except Exception as exc:
        _log(f"{name}: CRASHED\n{traceback.format_exc()}")
        return {"error": f"{type(exc).__name__}: {exc}"}


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The measurement with the median time (the first error if any failed), with every time it took."""
    if errors := [r for r in results if "error" in r]:
        return errors[0]
    ordered = sorted(results, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "seconds_each": [round(r["seconds"], 3) for r in results]}


def _measure_run(
    dsn: str,
    workdir: Path,
    concurrency: int,
    states: dict[str, Any],
    key: str = "run",
    extra_config: str = "",
    throttle: dict[str, str] | None = None,
) -> dict[str, Any]:
    result = runcmd.measure(
        dsn, workdir / f"{key}-artifacts", concurrency, workdir / f"{key}-logs", extra_config, throttle
    )
    state, done = tables.snapshot_state(dsn), tables.progress(dsn)
    states[key] = state
    result.update(rows_in_tables={t: v["rows"] for t, v in state.items()}, snapshots_state=done)
    result["etl_events"] = tables.event_count(dsn)
    if result["exit_code"] != 0 or result["report"] is None:  # not a measurement: no rates, no ratios
        last = (result.get("stderr_tail") or "").strip().splitlines()[-1:] or ["(no stderr)"]
        result["error"] = (
            f"`run` exited {result['exit_code']}{'' if result['report'] else ' without a JSON report'}: {last[0][:300]}"
        )
    else:
        result["note"] = ", ".join(f"{k} {v}" for k, v in done.items())
    return result


def _measure_naive(dsn: str, states: dict[str, Any]) -> dict[str, Any]:
    result = naive.measure(dsn)
    states["naive"] = tables.snapshot_state(dsn)
    result["rows_in_tables"] = {t: v["rows"] for t, v in states["naive"].items()}
    result["note"] = f"ok {result['ok']}, failed {result['failed']}, placeholders {result['placeholders']}"
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print the table; write bench/results/<UTC stamp>.json and latest.json."""
    args = _args(argv)
    pid, started_at = os.getpid(), datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    users = args.users or max(10, args.snapshots // 6)
    spec = SyntheticSpec(snapshots=args.snapshots, users=users, seed=args.seed, mix="v1")
    spec_v2 = replace(spec, mix="v2")
    stats_v2 = None
    workdir = DATA_DIR / f"{stamp}-{pid}"
    methods: dict[str, dict[str, Any]] = {}
    states: dict[str, Any] = {}
    rows = 0
    with server(args.dsn) as srv:
        server_info = srv.info()
        _log(f"server: {server_info}")
        template = f"bench_data_{pid}"
        t0 = time.perf_counter()
        _, stats = corpus_db(srv, template, spec)
        _log(
            f"loaded {stats.snapshots} snapshots, {stats.bytes / 1e6:.1f} MB of JSON "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        ok = stats.by_kind.get("ok", 0)
        template_v2 = f"bench_data_v2_{pid}"
        if "run_v2" in args.methods:
            _, stats_v2 = corpus_db(srv, template_v2, spec_v2)
            _log(f"loaded the v2 mix: {stats_v2.snapshots} snapshots, {stats_v2.bytes / 1e6:.1f} MB of JSON")
        if "floor" in args.methods:
            _log("floor: normalizing and writing COPY files (untimed)")
            prepared = floor.prepare(spec, workdir / "floor")
            rows = prepared.entity_rows
            _log(
                f"floor: {rows:,} entity rows, {prepared.copy_bytes / 1e6:.1f} MB of COPY text "
                f"in {prepared.seconds:.1f} s"
            )
        # floor and run alternate, so that a drift of the machine's speed (20-30% within minutes on a shared
        # VM) hits both alike; each adjacent pair gives one floor/run ratio
        measured: dict[str, list[dict[str, Any]]] = {"floor": [], "run": [], "run_noevents": [], "run_v2": []}
        for i in range(args.repeat):
            tag = f" ({i + 1}/{args.repeat})" if args.repeat > 1 else ""
            if "floor" in args.methods:
                measured["floor"].append(
                    _run_method("floor", srv, template, pid, lambda d: floor.measure(d, prepared), tag, args.keep)
                )
            # run (events on, the default) and run_noevents (events.enabled: false) back to back, the order
            # swapped every other repeat: each adjacent pair gives one events-on/off throughput ratio
            order = ("run", "run_noevents") if i % 2 == 0 else ("run_noevents", "run")
            for key in order:
                if key not in args.methods:
                    continue
                extra = NO_EVENTS if key == "run_noevents" else ""
                measured[key].append(
                    _run_method(
                        key,
                        srv,
                        template,
                        pid,
                        lambda d, k=key, x=extra: _measure_run(
                            d, workdir, args.concurrency, states, k, x, args.throttle
                        ),
                        tag,
                        args.keep,
                    )
                )
            if "run_v2" in args.methods:
                measured["run_v2"].append(
                    _run_method(
                        "run_v2",
                        srv,
                        template_v2,
                        pid,
                        lambda d: _measure_run(d, workdir, args.concurrency, states, "run_v2", throttle=args.throttle),
                        tag,
                        args.keep,
                    )
                )
        for name, results in measured.items():
            if results:
                methods[name] = _median(results)
        if "naive" in args.methods:
            methods["naive"] = _run_method(
                "naive", srv, template, pid, lambda d: _measure_naive(d, states), keep=args.keep
            )
        rows = rows or floor.count_rows(spec)
        if args.keep:
            _log(f"keeping databases: {', '.join(srv.created)}")
            srv.created.clear()
    rows_v2 = floor.count_rows(spec_v2) if "run_v2" in methods else 0
    for name, m in methods.items():
        if "error" not in m:
            methods[name] = _rates(m, spec.snapshots, rows_v2 if name == "run_v2" else rows)
    result: dict[str, Any] = {
        "schema_version": 1,
        "generated_at": started_at.isoformat(),
        "snapshots": spec.snapshots,
        "ok_snapshots": ok,
        "users": spec.users,
        "seed": spec.seed,
        "rows": rows,
        "json_bytes": stats.bytes,
        "snapshots_by_kind": dict(stats.by_kind),
        "mixes": {"floor": "v1", "run": "v1", "run_noevents": "v1", "naive": "v1", "run_v2": "v2"},
        "v2": None
        if stats_v2 is None
        else {
            "ok_snapshots": stats_v2.by_kind.get("ok", 0),
            "rows": rows_v2,
            "json_bytes": stats_v2.bytes,
            "snapshots_by_kind": dict(stats_v2.by_kind),
        },
        "concurrency": args.concurrency,
        "throttle": args.throttle,
        "server": server_info,
        "methods": methods,
    }
    result["ratios"] = report.ratios(methods)
    result["targets"] = report.targets(result)
    if "run" in states and "naive" in states and "error" not in methods.get("run", {}):
        result["agreement"] = tables.compare(states["run"], states["naive"])
    if "run" in states and "run_noevents" in states:
        result["events_agreement"] = tables.compare(states["run"], states["run_noevents"])
    print(report.table(result))
    path = report.write(result, stamp)
    _log(f"results: {path}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any("error" in m for m in methods.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
