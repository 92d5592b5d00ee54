"""`python -m bench.impact [--quick]`: how much a backfill hurts a production read load on the same server.

A throwaway PostgreSQL (or --dsn), pgbench select-only at a fixed rate as the production reads, and the
synthetic corpus (`starforge_backfill.synthetic`, v2 mix) as the backfill. Phases, in this order: quiet
windows before; windows during a default run (guard on, ramp starting at C=2); quiet windows in the middle;
windows during a guard-off run (`throttle.enabled: false`); quiet windows after; then idle-server runs (no
pgbench) guard on and off, alternated; then a window or two per extra guard setting for the trade-off plot.
Every run window uses a fresh copy of the corpus; every window starts from a settled server. It prints
every window, the trade-off plot and a summary block, and writes bench/results/impact-<stamp>.{json,svg}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.impact import backfill, pgbench, phases, plot, summary
from bench.report import RESULTS_DIR
from bench.server import Server, init_schema
from starforge_backfill.synthetic import SyntheticSpec, load

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
# lighter than the main bench's mix (no 2.5 MB payloads): a copy per window stays quick, and a run still
# lasts through a window
SIZE_MIX = ((0.85, 30_000), (0.15, 300_000))
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}
# extra points for the trade-off plot; each is kept only if this checkout's config accepts its keys. The
# `pinned-*` points hold the guard at one fixed duty cycle (slow at any WAL above 1 byte/s, which a running
# backfill always writes, the probe's slow signal off: one worker, and `nice_ratio_max` idling reached in one
# step), mapping what each level of backing off buys; `floor5-3x` is the first defaults (a probe floor of
# 5 ms, slow at 3x). (A probe ratio of 0.001 with a floor of 0 did not pin: a p90 at the baseline does not count.)
ALWAYS_SLOW = {"wal_bytes_per_s_max": 1.0, "probe_latency_ratio_max": 0.0}
TRADEOFF = (
    backfill.Setting("pinned-1w", ALWAYS_SLOW | {"nice_ratio_max": 0.0}),
    backfill.Setting("pinned-1w-nice1", ALWAYS_SLOW | {"nice_ratio_max": 1.0, "nice_step": 1.0}),
    backfill.Setting("pinned-1w-nice3", ALWAYS_SLOW | {"nice_ratio_max": 3.0, "nice_step": 3.0}),
    backfill.Setting("floor5-3x", {"probe_floor_ms": 5.0, "probe_latency_ratio_max": 3.0}),
)


def _log(message: str) -> None:
    print(f"[impact {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _setting(text: str) -> backfill.Setting:
    """NAME:key=value,key=value (throttle keys; values parsed as YAML scalars)."""
    import yaml

    name, _, body = text.partition(":")
    if not name or not body:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:key=value[,key=value...]")
    pairs = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"{item!r}: expected key=value")
        pairs[key.strip()] = yaml.safe_load(value)
    return backfill.Setting(name, pairs)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.impact", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (~2 min): 4 s windows, 1 per quiet phase, 2 per run phase, 1 pair",
    )
    p.add_argument("--dsn", help="admin DSN of the server to use (default: a throwaway embedded PostgreSQL)")
    p.add_argument("--window", type=float, help="window length in seconds (default 10; quick 4)")
    p.add_argument(
        "--quiet-windows",
        type=int,
        help="windows before and after (default 4; quick 1); half as many in the middle",
    )
    p.add_argument("--run-windows", type=int, help="windows per run phase (default 4; quick 2)")
    p.add_argument(
        "--idle-pairs",
        type=int,
        help="idle runs guard on / off / on with the batch pinned, alternated (default 3 each; quick 1)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="a run window opens this many seconds after the first batch (the guard's steady state; default 0)",
    )
    p.add_argument("--tradeoff-windows", type=int, help="windows per extra trade-off setting (default 2; quick 1)")
    p.add_argument("--snapshots", type=int, help="corpus size (default 6000; quick 1500)")
    p.add_argument(
        "--idle-snapshots", type=int, default=2500, help="idle runs take the newest N snapshots (default 2500)"
    )
    p.add_argument("--scale", type=int, default=5, help="pgbench scale (default 5)")
    p.add_argument("--script", default="select-only", choices=("select-only", "tpcb-like"), help="pgbench script")
    p.add_argument("--rate", type=int, default=1000, help="pgbench -R, transactions/s in all (default 1000)")
    p.add_argument("--clients", type=int, default=4, help="pgbench -c (default 4; -j is min(2, clients))")
    p.add_argument("--concurrency", type=int, default=backfill.CONCURRENCY, help="run --concurrency (default 2)")
    p.add_argument(
        "--setting",
        action="append",
        type=_setting,
        default=None,
        help="extra trade-off point NAME:key=value[,...] (throttle keys; repeatable; replaces the built-in list)",
    )
    p.add_argument(
        "--no-durable", action="store_true", help="keep the embedded server's fsync=off (default: fsync etc. on)"
    )
    a = p.parse_args(argv)
    quick = a.quick
    a.window = a.window or (4.0 if quick else 10.0)
    a.quiet_windows = a.quiet_windows or (1 if quick else 4)
    a.run_windows = a.run_windows or (2 if quick else 4)
    a.idle_pairs = a.idle_pairs or (1 if quick else 3)
    a.tradeoff_windows = a.tradeoff_windows or (1 if quick else 2)
    a.snapshots = a.snapshots or (1500 if quick else 6000)
    return a


def _without(options: str, keys: dict[str, str]) -> str:
    """`-c key=value ...` server options without the given keys."""
    words = options.split()
    pairs = [(words[i], words[i + 1]) for i in range(0, len(words) - 1, 2)]
    return " ".join(f"{flag} {kv}" for flag, kv in pairs if not (flag == "-c" and kv.split("=")[0] in keys))


@contextlib.contextmanager
def _server(dsn: str | None, durable: bool) -> Iterator[Server]:
    if dsn:
        srv = Server(dsn, "--dsn")
    else:
        from starforge_backfill import embedded as emb

        server = emb.EmbeddedPostgres()
        fast = emb._SERVER_OPTIONS
        if durable:  # production writes are durable: the backfill's WAL flushes are part of its impact
            emb._SERVER_OPTIONS = _without(fast, DURABLE)
        try:
            srv = Server(server.start(), "embedded (throwaway)", embedded=server)
        finally:
            emb._SERVER_OPTIONS = fast
        if durable:  # the pgserver launcher sets them with ALTER SYSTEM instead
            with srv.admin() as conn:
                for key, value in DURABLE.items():
                    conn.execute(f"ALTER SYSTEM SET {key} = {value}")
                conn.execute("SELECT pg_reload_conf()")
    try:
        yield srv
    finally:
        try:
            srv.drop_all()
        finally:
            srv.stop()


def _load_corpus(srv: Server, name: str, snapshots: int) -> dict[str, Any]:
    dsn = srv.create_db(name)
    init_schema(dsn)
    spec = SyntheticSpec(snapshots=snapshots, users=max(10, snapshots // 6), size_mix=SIZE_MIX, mix="v2")
    with psycopg.connect(dsn) as conn:
        stats = load(conn, spec)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
    return {"snapshots": stats.snapshots, "json_mb": round(stats.bytes / 1e6, 1), "load_s": round(stats.seconds, 1)}


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # cleanup (runs, pgbench, the throwaway server) happens in `finally`


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started_at = datetime.now(UTC)
    stamp, pid = started_at.strftime("%Y%m%dT%H%M%SZ"), os.getpid()
    workdir = DATA_DIR / f"impact-{stamp}-{pid}"
    plan = phases.Plan(window_s=a.window, lead_s=1.0 if a.quick else 2.0, warmup_s=a.warmup)
    load_spec = pgbench.Load(a.script, a.rate, a.clients, min(2, a.clients))
    extra = list(a.setting if a.setting is not None else TRADEOFF)
    settings = [backfill.DEFAULT, backfill.OFF, backfill.PINNED]
    skipped = {}
    for s in extra:
        if (why := backfill.accepted(s)) is None:
            settings.append(s)
        else:
            skipped[s.name] = why
            _log(f"trade-off setting {s.name} skipped: {why}")
    for s in settings[:3]:
        if why := backfill.accepted(s):
            print(f"error: the {s.name} setting is not valid here: {why}", file=sys.stderr)
            return 2
    result: dict[str, Any] = {
        "schema_version": 1,
        "generated_at": started_at.isoformat(timespec="seconds"),
        "quick": a.quick,
        "conditions": {"loadavg_before": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
        "load": {"script": a.script, "rate": a.rate, "clients": a.clients, "threads": load_spec.threads},
        "scale": a.scale,
        "plan": vars(plan),
        "concurrency": a.concurrency,
        "settings": {s.name: s.label() for s in settings},
        "skipped_settings": skipped,
        "phases": {},
        "idle": [],
    }
    t0 = time.perf_counter()
    with _server(a.dsn, not a.no_durable) as srv:
        result["server"] = srv.info()
        _log(f"server: {result['server']}")
        pgb_dsn = srv.create_db(f"impact_pgbench_{pid}")
        _log(f"pgbench -i -s {a.scale}: {pgbench.initialize(pgb_dsn, a.scale):.1f} s")
        template = f"impact_data_{pid}"
        result["corpus"] = _load_corpus(srv, template, a.snapshots)
        idle_since = backfill.newest_since(srv.db_dsn(template), a.idle_snapshots)
        result["corpus"]["idle_from"] = idle_since
        _log(f"corpus: {result['corpus']}")
        counter = iter(range(1, 10**6))

        def quiet(phase: str, n: int) -> None:
            for i in range(n):
                w = phases.quiet_window(srv, pgb_dsn, load_spec, plan, workdir, f"{phase}-{i}")
                result["phases"].setdefault(phase, []).append(w)
                pcts = f"p50 {w['p50']} p90 {w['p90']} p99 {w['p99']} ms"
                _log(f"{phase} {i + 1}: {pcts} ({w['transactions']} tx; settle {w['settle']})")

        def loaded(phase: str, setting: backfill.Setting, n: int) -> None:
            for i in range(n):
                name = f"impact_run_{pid}_{next(counter)}"
                w = phases.run_window(srv, pgb_dsn, template, setting, load_spec, plan, workdir, name)
                result["phases"].setdefault(phase, []).append(w)
                _log(
                    f"{phase} {i + 1}: "
                    + (
                        w.get("error")
                        or f"p50 {w['p50']} p90 {w['p90']} p99 {w['p99']} ms, {w['snapshots_per_s']} snap/s"
                    )
                )

        quiet("quiet-before", a.quiet_windows)
        loaded("default", backfill.DEFAULT, a.run_windows)
        quiet("quiet-middle", max(1, a.quiet_windows // 2))
        loaded("guard-off", backfill.OFF, a.run_windows)
        quiet("quiet-after", a.quiet_windows)
        for i in range(a.idle_pairs):
            for s in (backfill.DEFAULT, backfill.OFF, backfill.PINNED):
                name = f"impact_idle_{pid}_{next(counter)}"
                r = phases.idle_run(srv, template, s, plan, workdir, name, since=idle_since)
                result["idle"].append(r)
                _log(
                    f"idle {s.name} {i + 1}: " + (r.get("error") or f"{r['snapshots_per_s']} snap/s, {r['seconds']} s")
                )
        for s in settings[3:]:
            loaded(s.name, s, a.tradeoff_windows)
    result["conditions"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["conditions"]["bench_seconds"] = round(time.perf_counter() - t0)
    s = summary.summarize(result)
    result["summary"] = s
    print(summary.windows_table(result))
    print()
    print(plot.ascii_plot(s["tradeoff"]))
    print()
    print("---- summary (paste into bench/README.md) ----")
    print(summary.summary_block(result, s))
    print("----")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"impact-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    svg_path = RESULTS_DIR / f"impact-{stamp}.svg"
    shutil.rmtree(workdir, ignore_errors=True)
    svg_path.write_text(plot.svg(s["tradeoff"], f"bench/impact {stamp}: p99 ratio vs backfill throughput"))
    _log(f"results: {path}, {svg_path} ({result['conditions']['bench_seconds']} s)")
    errors = [w for ws in result["phases"].values() for w in ws if "error" in w] + [
        r for r in result["idle"] if "error" in r
    ]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
