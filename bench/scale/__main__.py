"""`python -m bench.scale` (`make bench-scale`): the backfill at 10k, 100k and 1M snapshots.

For each size N (`--sizes`), on a throwaway server whose settings the bench controls (`--dsn` uses another
server as it is): the corpus is generated in SQL (bench/scale/generate.py, v2 mix, 20 snapshots per user,
10 troops and 3 pets each) and VACUUM (FREEZE, ANALYZE)d once; then, each in a fresh copy of it and close
in time:

- **floor**: COPY of every valid snapshot's normalized rows (computed in SQL from the same formulas,
  exported untimed) into unindexed tables: the perf bar's floor, at the same size;
- **floor_indexed**: COPY of the rows the C=1 run left (`user_troops`, `user_pets`, summaries) into tables
  with the same primary keys: the index maintenance any writer of tables this size pays;
- **run** at each `--concurrency` (default 1,2), the ramp off (it starts at C), as a subprocess: wall time,
  peak RSS; pg_stat_statements per statement (time, calls, buffers read, temp blocks written: a spill),
  and auto_explain's EXPLAIN (ANALYZE, BUFFERS) of a sample of the run's statements (server log);
- **ops** on the last run's database: status, census --sample 5 (and exact up to --census-exact-max),
  verify (sample), verify --full of the last run's job (--job-id) when the command has it, plan, report:
  wall time of each subprocess, and each verify's verdict (passed, failed checks, the full check's findings).

Every figure is recorded with the load average of the moment; ratios to the floor measured minutes apart
are what to compare. Writes bench/results/scale-<stamp>.json and prints a table per size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import floor as floor_mod
from bench import runcmd, tables
from bench.scale import generate as gen
from bench.server import Server, init_schema
from starforge_backfill import templates

RESULTS = Path(__file__).resolve().parents[1] / "results"
# the server's settings for the measured runs: PostgreSQL's defaults for the three the issue names
SETTINGS = {
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "5min",
    "shared_preload_libraries": "pg_stat_statements",
    "max_connections": "200",
}
EXPLAIN = {  # per run database: a sample of statements explained with ANALYZE and BUFFERS into the log
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.sample_rate": "0.02",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_timing": "on",
}


def _log(message: str) -> None:
    print(f"[bench.scale {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


class Throwaway:
    """An embedded server with SETTINGS applied (ALTER SYSTEM, then a restart)."""

    def __init__(self, overrides: dict[str, str]) -> None:
        from starforge_backfill import embedded

        # durability as PostgreSQL ships it (the embedded server turns fsync, full_page_writes and
        # synchronous_commit off for tests): checkpoints and full-page images are part of a backfill's cost
        embedded._SERVER_OPTIONS = "-c max_connections=200"
        self.pg = embedded.EmbeddedPostgres()
        dsn = self.pg.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name, value in (SETTINGS | overrides).items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'".encode())
        self.pg.restart()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.server = Server(dsn, "embedded", embedded=self.pg)

    @property
    def log(self) -> Path | None:
        return self.pg.pgdata / "server.log" if self.pg.pgdata else None


def _settings(srv: Server) -> dict[str, str]:
    names = ["server_version", "fsync", "synchronous_commit", "full_page_writes", "random_page_cost", *SETTINGS]
    with srv.admin() as conn:
        rows = conn.execute(
            "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name = ANY(%s)", (names,)
        ).fetchall()
    return dict(rows)


def generate(srv: Server, n: int, name: str) -> dict[str, Any]:
    """The data database of one size: schema, catalogs, N snapshots, VACUUM (FREEZE, ANALYZE)."""
    dsn = srv.create_db(name)
    init_schema(dsn)
    users = -(-n // gen.PER_USER)
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(gen.catalogs_sql().encode())
        conn.execute(gen.bind(gen.insert_sql()), {"n": n, "users": users})
        conn.execute("VACUUM (FREEZE, ANALYZE) hero_snapshots")
        mb = conn.execute("SELECT pg_total_relation_size('hero_snapshots') / 1e6").fetchone()
    return {
        "users": users,
        "seconds": round(time.perf_counter() - started, 1),
        "table_mb": round(mb[0]),
        "load": _load(),
    }


def floor_files(dsn: str, n: int, workdir: Path) -> floor_mod.Prepared:
    """Export the floor's rows (untimed) as COPY text files, one per floor table."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prepared = floor_mod.Prepared({t: workdir / f"{t}.copy" for t in floor_mod.COLUMNS})
    users = -(-n // gen.PER_USER)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, path in prepared.files.items():
            stmt = gen.bind(gen.floor_select(table)).decode()
            query = psycopg.sql.SQL("COPY ({}) TO STDOUT").format(psycopg.sql.SQL(stmt))  # type: ignore[arg-type]
            lines = 0
            with path.open("wb") as out, cur.copy(query, {"n": n, "users": users}) as copy:
                for block in copy:
                    out.write(block)
                    lines += bytes(block).count(b"\n")
            prepared.rows[table] = lines
    prepared.copy_bytes = sum(p.stat().st_size for p in prepared.files.values())
    prepared.seconds = time.perf_counter() - started
    return prepared


INDEXED = ("user_troops", "user_pets", "user_profile_summary")


def indexed_files(dsn: str, workdir: Path) -> dict[str, Path]:
    """The run's final rows of the three big tables, exported (untimed) for the indexed floor."""
    files = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table in INDEXED:
            files[table] = workdir / f"indexed_{table}.copy"
            with files[table].open("wb") as out, cur.copy(f"COPY {table} TO STDOUT".encode()) as copy:
                for block in copy:
                    out.write(block)
    return files


def indexed_floor(dsn: str, files: dict[str, Path]) -> dict[str, Any]:
    """Time COPY of those rows into empty tables with the same primary keys (no foreign keys)."""
    with psycopg.connect(dsn) as conn:
        for table in INDEXED:
            conn.execute(f"CREATE TABLE fi_{table} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)".encode())
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for table, path in files.items():
                with path.open("rb") as src, cur.copy(f"COPY fi_{table} FROM STDIN".encode()) as copy:
                    while block := src.read(1 << 20):
                        copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        rows = {t: conn.execute(f"SELECT count(*) FROM fi_{t}".encode()).fetchone()[0] for t in INDEXED}
    return {"seconds": round(seconds, 3), "rows": rows, "load": _load()}


def _statements(srv: Server, db: str, limit: int = 12) -> list[dict[str, Any]]:
    with srv.admin() as conn:
        try:
            rows = conn.execute(
                """SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, rows, shared_blks_hit,
                          shared_blks_read, temp_blks_written, wal_bytes
                   FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)
                   ORDER BY total_exec_time DESC LIMIT %s""",
                (db, limit),
            ).fetchall()
        except psycopg.Error:
            return []
    return [
        {
            "query": q[:160],
            "calls": c,
            "total_ms": round(t),
            "mean_ms": round(t / max(c, 1), 2),
            "rows": r,
            "hit": h,
            "read": rd,
            "temp_written": tw,
            "wal_mb": round(float(w) / 1e6, 1),
        }
        for q, c, t, r, h, rd, tw, w in rows
    ]


def _server_counters(srv: Server) -> dict[str, float]:
    """Checkpoints (timed, requested) and WAL bytes so far: their deltas over a run."""
    with srv.admin() as conn:
        timed, req, written = conn.execute(
            "SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter"
        ).fetchone()
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
    return {
        "checkpoints_timed": timed,
        "checkpoints_req": req,
        "buffers_checkpoint": written,
        "wal_mb": float(wal) / 1e6,
    }


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 1) for k in before}


def _reset_statements(srv: Server) -> None:
    with srv.admin() as conn:
        try:
            conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error:
            pass


def _plans(log: Path | None, offset: int, out: Path) -> int:
    """Copy the auto_explain plans logged since `offset` into `out`; return how many."""
    if log is None or not log.exists():
        return 0
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    plans = [p for p in re.split(r"\n(?=\S+ \S+ UTC \[\d+\] LOG:)", text) if "duration:" in p and "plan:" in p]
    out.write_text("\n\n".join(plans) + "\n")
    return len(plans)


def verdict(doc: dict[str, Any]) -> dict[str, Any]:
    """What a `verify --json` document concluded: passed, the failed checks, the mode and scope, and the
    `full` check's counts (users, snapshots, its own seconds, findings by kind and table, the first few)."""
    out: dict[str, Any] = {
        "passed": doc.get("passed"),
        "failed": doc.get("failed"),
        "mode": doc.get("mode"),
        "mode_detail": doc.get("mode_detail"),
        "scope": doc.get("scope"),
        "artifact": doc.get("artifact"),
    }
    for check in doc.get("checks") or []:
        if check.get("name") != "full":
            continue
        data = check.get("data") or {}
        out["full"] = {k: data.get(k) for k in ("users", "snapshots", "chunks", "seconds", "snapshots_per_s", "rows")}
        out["full"] |= {
            "finding_count": data.get("finding_count"),
            "by_kind": data.get("by_kind"),
            "by_table": data.get("by_table"),
            "findings_first": (data.get("findings") or [])[:5],
            "detail": check.get("detail", "")[:500],
        }
    return out


def _cli(dsn: str, artifacts: Path, *argv: str, parse: bool = False) -> dict[str, Any]:
    """Run one command as a subprocess: wall time, exit code, load; with `parse`, its --json document too."""
    script = Path(sys.executable).parent / "starforge-backfill"
    cmd = [str(script), "--dsn", dsn, "--artifacts-dir", str(artifacts), "--json", *argv]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {
        "wall_s": round(time.perf_counter() - started, 2),
        "exit": proc.returncode,
        "load": _load(),
        "argv": list(argv),
    }
    if proc.returncode not in (0, 1):
        result["stderr"] = proc.stderr.strip()[-300:]
    if parse:
        try:
            result["doc"] = json.loads(proc.stdout)
        except ValueError:
            result["stdout_head"] = proc.stdout[:300]
    return result


def _verify(dsn: str, artifacts: Path, *argv: str) -> dict[str, Any]:
    """`verify` timed, with its verdict (not only its exit code) recorded."""
    result = _cli(dsn, artifacts, "verify", *argv, parse=True)
    if "doc" in result:
        result["verdict"] = verdict(result.pop("doc"))
    return result


def _has_option(command: str, option: str) -> bool:
    script = Path(sys.executable).parent / "starforge-backfill"
    out = subprocess.run([str(script), command, "--help"], capture_output=True, text=True, check=False).stdout
    return option in out


def ops(dsn: str, artifacts: Path, job_id: str | None, n: int, census_exact_max: int) -> dict[str, Any]:
    """Time the operator's other commands on a database the run has filled."""
    window = ("--from", gen.FROM, "--to", gen.TO)
    out: dict[str, Any] = {"status": _cli(dsn, artifacts, "status")}
    out["census_sample5"] = _cli(dsn, artifacts, "census", *window, "--sample", "5")
    if n <= census_exact_max:
        out["census_exact"] = _cli(dsn, artifacts, "census", *window)
    out["verify_sample"] = _verify(dsn, artifacts, *window)
    if _has_option("verify", "--full"):
        # the run's job as a whole (its range and selector, and its counters checked against the tables);
        # without a job id, the generated window (every snapshot: the same rows, not the job's checks)
        scope = ("--job-id", job_id) if job_id else window
        out["verify_full"] = _verify(dsn, artifacts, *scope, "--full")
    else:
        out["verify_full"] = {"skipped": "verify has no --full in this checkout"}
    out["plan"] = _cli(dsn, artifacts, "plan", *window, "--t-avg", "0.0005", "--concurrency", "2")
    if job_id:
        out["report"] = _cli(dsn, artifacts, "report", "--job-id", job_id)
    return out


def measure_size(srv: Server, log: Path | None, n: int, args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    tag = f"{n}_{os.getpid()}"
    work = RESULTS / f"scale-{stamp}" / str(n)
    work.mkdir(parents=True, exist_ok=True)
    data = f"scale_data_{tag}"
    result: dict[str, Any] = {"snapshots": n}
    _log(f"N={n:,}: generating")
    result["generate"] = generate(srv, n, data)
    _log(f"N={n:,}: generated {result['generate']}")
    data_dsn = srv.db_dsn(data)
    prepared = floor_files(data_dsn, n, work / "floor")
    result["floor_rows"] = prepared.rows
    srv.checkpoint()
    fdsn = srv.create_db(f"scale_floor_{tag}")
    f = floor_mod.measure(fdsn, prepared)
    srv.drop(f"scale_floor_{tag}")
    result["floor"] = {"seconds": round(f["seconds"], 3), "load": _load(), "copy_mb": round(prepared.copy_bytes / 1e6)}
    _log(f"N={n:,}: floor {result['floor']}")
    result["runs"] = {}
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    for i, c in enumerate(concurrencies):
        db = f"scale_run{c}_{tag}"
        dsn = srv.create_db(db, data)
        with srv.admin() as conn:
            for name, value in EXPLAIN.items():
                conn.execute(f"ALTER DATABASE {db} SET {name} = '{value}'".encode())
        srv.checkpoint()
        _reset_statements(srv)
        offset = log.stat().st_size if log and log.exists() else 0
        load_before, counters = _load(), _server_counters(srv)
        r = runcmd.measure(dsn, work / f"artifacts{c}", c, work / f"run{c}")
        counters = _delta(counters, _server_counters(srv))
        report = r.get("report") or {}
        run = {
            "seconds": round(r["seconds"], 2),
            "exit": r["exit_code"],
            "peak_rss_mb": r["peak_rss_mb"],
            "load_before": load_before,
            "load_after": _load(),
            "progress": tables.progress(dsn),
            "server": counters,
            "statements": _statements(srv, db),
            "plans": _plans(log, offset, work / f"plans-c{c}.log"),
        }
        with psycopg.connect(dsn) as conn:
            run["tables_mb"] = round(
                float(templates.fetch_one(conn, "runbook/server_settings.sql")["tables_bytes"]) / 1e6, 1
            )
        if r.get("stderr_tail"):
            run["stderr_tail"] = r["stderr_tail"][-500:]
        run["snap_per_s"] = round(n / r["seconds"], 1)
        run["floor_over_run"] = round(result["floor"]["seconds"] / r["seconds"], 3)
        run["per_worker_ratio"] = round(run["floor_over_run"] / c, 3)
        result["runs"][str(c)] = run
        _log(f"N={n:,} C={c}: {r['seconds']:.1f} s, {run['snap_per_s']}/s, floor/run {run['floor_over_run']}")
        if i == 0:
            files = indexed_files(dsn, work / "floor")
            fi_db = f"scale_fi_{tag}"
            fi_dsn = srv.create_db(fi_db, data)
            srv.checkpoint()
            result["floor_indexed"] = indexed_floor(fi_dsn, files)
            srv.drop(fi_db)
            _log(f"N={n:,}: indexed floor {result['floor_indexed']}")
        if i == len(concurrencies) - 1:
            result["ops"] = ops(dsn, work / f"artifacts{c}", report.get("job_id"), n, args.census_exact_max)
            _log(f"N={n:,}: ops {result['ops']}")
        if not args.keep:
            srv.drop(db)
    if not args.keep:
        srv.drop(data)
        shutil.rmtree(work / "floor", ignore_errors=True)
    return result


def _verdict_text(op: dict[str, Any]) -> str:
    v = op.get("verdict")
    if not v:
        return ""
    text = " passed" if v.get("passed") else f" FAILED {v.get('failed')}"
    if "full" in v:
        text += f", {v['full']['finding_count']} finding(s) over {v['full']['snapshots']} snapshots"
    return f" [{text.strip()}]"


def _print(results: list[dict[str, Any]]) -> None:
    print("| N | C | run s | snap/s | floor s | floor/run | per worker | peak RSS | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for res in results:
        for c, r in res.get("runs", {}).items():
            print(
                f"| {res['snapshots']:,} | {c} | {r['seconds']} | {r['snap_per_s']:,} | {res['floor']['seconds']} | "
                f"{r['floor_over_run']} | {r['per_worker_ratio']} | {r['peak_rss_mb']} MB | "
                f"{r['load_before']}-{r['load_after']} |"
            )
    for res in results:
        o = res.get("ops", {})
        print(
            f"N={res['snapshots']:,} ops: "
            + ", ".join(
                f"{k} {v['wall_s']} s" + (f" (exit {v['exit']})" if v.get("exit") else "") + _verdict_text(v)
                for k, v in o.items()
                if "wall_s" in v
            )
        )
        if "floor_indexed" in res:
            print(
                f"N={res['snapshots']:,} indexed floor: {res['floor_indexed']['seconds']} s "
                f"{res['floor_indexed']['rows']}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--concurrency", default="1,2", help="run at each C (default 1,2), ramp off")
    parser.add_argument("--dsn", default=None, help="admin DSN of a server to use as it is (default: a throwaway one)")
    parser.add_argument("--census-exact-max", type=int, default=100_000, help="exact census only up to this N")
    parser.add_argument("--keep", action="store_true", help="keep the databases and COPY files")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for the throwaway server (repeatable), e.g. shared_buffers=1GB",
    )
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    overrides = dict(item.split("=", 1) for item in args.set)
    throwaway = None if args.dsn else Throwaway(overrides)
    srv = Server(args.dsn, "--dsn") if args.dsn else throwaway.server  # type: ignore[union-attr]
    log = throwaway.log if throwaway else None
    doc: dict[str, Any] = {"generated_at": stamp, "settings": _settings(srv), "results": []}
    _log(f"server: {doc['settings']}")
    status = 0
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            try:
                doc["results"].append(measure_size(srv, log, n, args, stamp))
            except Exception:
                traceback.print_exc()
                doc["results"].append({"snapshots": n, "error": traceback.format_exc()[-1000:]})
                status = 1
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"scale-{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    finally:
        if not args.keep:
            srv.drop_all()
        if throwaway:
            srv.stop()
    _print([r for r in doc["results"] if "runs" in r])
    _log(f"wrote {RESULTS / f'scale-{stamp}.json'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
