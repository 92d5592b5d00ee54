"""`python -m bench.census`: the `census` step timed on a 100,000-snapshot range, exact and `--sample 5`.

The snapshots are generated in SQL (generate_series + jsonb_build_object, about 20 s for 100,000) over two
years, in the shapes the census tells apart and drifting the way real data does: v1 payloads (bare, array
sections) early, the Parse envelope with keyed sections and NameCode inside ProfileData later, plus a few
double-encoded payloads, API error bodies, non-objects and snapshots with no namecode anywhere. Each
payload is 1-3 KB (20-40 troops), so most are stored compressed inline rather than TOASTed: real 30 KB-3 MB
payloads cost more per snapshot (decompression), which is what `--sample` is for. The data is VACUUM
(FREEZE, ANALYZE)d, then `starforge-backfill --json census` runs as an operator starts it (a subprocess;
wall time includes the interpreter's start) `--repeat` times in each mode, alternately; each mode is
reported by its median, with the statement's own time (`seconds` in the JSON). The bench reports; the one
target (`--sample 5` under 5 s) is printed as met or not, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.server import init_schema, server

RESULTS = Path(__file__).resolve().parent / "results"
FROM, TO = "2023-01-01T00:00:00Z", "2025-01-01T00:00:00Z"
SAMPLE_TARGET_S = 5.0

# One statement; `share` (0..1) is how far into the two years a snapshot lies, so the envelope's share grows.
GENERATE = """
INSERT INTO hero_snapshots (id, namecode, source, raw, size_bytes, created_at)
SELECT gen_random_uuid(), CASE WHEN k.kind = 'no_namecode' THEN NULL ELSE 'COL_' || g END, 'bench', p.raw,
       octet_length(p.raw::text), timestamptz '2023-01-01' + (g::float8 / %(n)s) * interval '730 days'
FROM generate_series(1, %(n)s) AS g
CROSS JOIN LATERAL (SELECT g::float8 / %(n)s AS share, (g * 7919) %% 100 AS r) AS s
CROSS JOIN LATERAL (
    SELECT CASE WHEN s.r < 2 THEN 'api_error' WHEN s.r < 3 THEN 'not_object' WHEN s.r < 4 THEN 'no_namecode'
                WHEN s.r < 8 THEN 'double_encoded' WHEN s.r < 8 + 80 * s.share THEN 'enveloped'
                ELSE 'bare' END AS kind) AS k
CROSS JOIN LATERAL (
    SELECT jsonb_object_agg((6000 + t)::text, jsonb_build_object('Amount', t, 'Level', 1 + t %% 20,
                                                                 'EliteLevel', t %% 3, 'TraitsOwned', t %% 4))
               AS keyed,
           jsonb_agg(jsonb_build_object('TroopId', 6000 + t, 'Amount', t, 'Level', 1 + t %% 20)) AS arr
    FROM generate_series(1, 20 + g %% 21) AS t) AS tr
CROSS JOIN LATERAL (
    SELECT CASE k.kind
        WHEN 'api_error' THEN jsonb_build_object('code', 141, 'error', 'Invalid session token')
        WHEN 'not_object' THEN to_jsonb('<html><body>502 Bad Gateway</body></html>'::text)
        WHEN 'enveloped' THEN jsonb_build_object('result', jsonb_build_object('ProfileData', jsonb_build_object(
            'NameCode', 'HERO_' || g, 'Name', 'Hero ' || g, 'Level', g %% 500, 'Troops', tr.keyed,
            'Pets', jsonb_build_object('101', jsonb_build_object('Level', 3)), 'GuildName', 'Knights ',
            'KingdomLevels', jsonb_build_object('Adana', 10), 'Progress', g %% 7, 'username', 'login' || g)))
        WHEN 'double_encoded' THEN to_jsonb(jsonb_build_object('NameCode', 'HERO_' || g, 'ProfileData',
            jsonb_build_object('Level', 3, 'Troops', tr.arr))::text)
        ELSE jsonb_build_object('NameCode', CASE WHEN k.kind = 'no_namecode' THEN NULL ELSE 'HERO_' || g END,
            'ProfileData', jsonb_build_object('Level', g %% 500, 'Troops', tr.arr,
            'Pets', jsonb_build_array(jsonb_build_object('PetId', 101)), 'Guild', jsonb_build_object('Name', 'K')))
    END AS raw) AS p
"""


def _log(message: str) -> None:
    print(f"[bench.census {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _census(dsn: str, artifacts: Path, *extra: str) -> dict[str, Any]:
    script = Path(sys.executable).parent / "starforge-backfill"
    argv = [str(script), "--dsn", dsn, "--artifacts-dir", str(artifacts), "--json", "census", "--from", FROM]
    started = time.perf_counter()
    proc = subprocess.run([*argv, "--to", TO, *extra], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"census exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    doc = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 3),
        "statement_s": doc["seconds"],
        "snapshots": doc["totals"]["snapshots"],
        "failing_share": doc["totals"]["failing"]["share"],
        "months": len(doc["months"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Generate, time, print, write bench/results/census-<stamp>.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.census", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=100_000)
    parser.add_argument("--sample", type=float, default=5.0, help="the sampled mode's PERCENT (default 5)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default=None, help="admin DSN (default as `python -m bench`)")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runs: dict[str, list[dict[str, Any]]] = {"exact": [], "sample": []}
    with server(args.dsn) as srv:
        dsn = srv.create_db(f"bench_census_{stamp.lower()}")
        init_schema(dsn)
        t0 = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(GENERATE.encode(), {"n": args.snapshots})
            conn.execute("VACUUM (FREEZE, ANALYZE) hero_snapshots")
            mb = conn.execute("SELECT pg_total_relation_size('hero_snapshots') / 1e6").fetchone()
        _log(
            f"generated {args.snapshots:,} snapshots in {time.perf_counter() - t0:.1f} s "
            f"(table {mb[0] if mb else 0:.0f} MB)"
        )
        artifacts = RESULTS / f"census-{stamp}-artifacts"
        for i in range(args.repeat):
            for mode, extra in (("exact", ()), ("sample", ("--sample", f"{args.sample:g}"))):
                runs[mode].append(_census(dsn, artifacts, *extra))
                _log(f"{mode} ({i + 1}/{args.repeat}): {runs[mode][-1]}")
    report: dict[str, Any] = {"generated_at": stamp, "snapshots": args.snapshots, "sample_percent": args.sample}
    for mode, results in runs.items():
        report[mode] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in results),
            "statement_s_median": statistics.median(r["statement_s"] for r in results),
            "runs": results,
        }
    met = report["sample"]["wall_s_median"] < SAMPLE_TARGET_S
    print(
        f"census of {args.snapshots:,} snapshots ({report['exact']['runs'][0]['months']} months), "
        f"median of {args.repeat}:"
    )
    for mode in runs:
        r = report[mode]
        print(
            f"  {mode:<7} wall {r['wall_s_median']:.2f} s (statement {r['statement_s_median']:.2f} s), "
            f"{r['runs'][0]['snapshots']:,} snapshot(s) read"
        )
    print(f"  --sample {args.sample:g} under {SAMPLE_TARGET_S:g} s: {'met' if met else 'NOT met'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"census-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
