"""`python -m bench.inherent`: what merely reading the payloads costs the server, against the COPY floor.

Issue 18 part 3 asks `run --concurrency 2` for 0.45x of the unindexed COPY floor. This measures a lower
bound for any ETL that reads `hero_snapshots.raw` in PostgreSQL: read-only SELECTs over the whole bench
corpus (same spec as `python -m bench`), in one statement, that do a part of what the stage must do and write
nothing, alternated with the floor's COPY (the bench's own files, a fresh database each time). Each is
timed by wall clock and by the server backend's CPU (from /proc), so the share of one core is visible.

- `detoast`: decompress every `raw` once (`jsonb_typeof`), nothing else;
- `fields`: + ProfileData and its three sections, each element's fields as text (`jsonb_to_recordset`,
  as the stage reads them), counted;
- `fields+extra`: + each element's `extra` (the element minus its known keys: a new jsonb value per
  element, which the run must write), counted.

Prints the medians and each variant's CPU over the floor's wall time: if that is above 1/0.45 = 2.2 on one
core (4.4 on two, with nothing else running), no ETL that reads the JSONB on the server can meet 0.45.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import floor
from bench.server import corpus_db, server
from bench.statements import _backend_cpu_s
from starforge_backfill.synthetic import SyntheticSpec

_PD = """
    FROM hero_snapshots AS h
    CROSS JOIN LATERAL (SELECT jsonb_path_query_first(h.raw, 'strict $ ? (@.type() == "object")') AS obj
                        OFFSET 0) AS r
    CROSS JOIN LATERAL (SELECT r.obj -> 'ProfileData' AS pd OFFSET 0) AS p
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(p.pd) = 'object' THEN p.pd END AS pd OFFSET 0) AS q
    CROSS JOIN LATERAL (SELECT q.pd -> 'Troops' AS tr, q.pd -> 'Pets' AS pe, q.pd -> 'Artifacts' AS ar
                        OFFSET 0) AS s
"""
_ARR = "CASE WHEN jsonb_typeof(s.{c}) = 'array' THEN s.{c} END"
VARIANTS = {
    "detoast": "SELECT count(*) FROM hero_snapshots AS h WHERE jsonb_typeof(h.raw) IS NOT NULL",
    "fields": f"""
SELECT sum((SELECT count(t."TroopId") + count(t."Amount") + count(t."Level") + count(t."Rarity")
                   + count(t."FusionCards") + count(t."TraitsOwned")
            FROM jsonb_to_recordset({_ARR.format(c="tr")}) AS t("TroopId" text, "Amount" text, "Level" text,
                 "Rarity" text, "FusionCards" text, "TraitsOwned" text))
         + (SELECT count(t."PetId") + count(t."Amount") + count(t."Level") + count(t."XP")
                   + count(t."OrbFusionCards") + count(t."AscensionLevel") + count(t."OrbsUsed")
            FROM jsonb_to_recordset({_ARR.format(c="pe")}) AS t("PetId" text, "Amount" text, "Level" text,
                 "XP" text, "OrbFusionCards" text, "AscensionLevel" text, "OrbsUsed" jsonb))
         + (SELECT count(t."ArtifactId") + count(t."Level") + count(t."XP")
            FROM jsonb_to_recordset({_ARR.format(c="ar")}) AS t("ArtifactId" text, "Level" text, "XP" text)))
{_PD}""",
    "fields+extra": f"""
SELECT sum((SELECT count(t."TroopId") + count(t."Amount") + count(t."Level") + count(t."Rarity")
                   + count(t."FusionCards") + count(t."TraitsOwned")
            FROM jsonb_to_recordset({_ARR.format(c="tr")}) AS t("TroopId" text, "Amount" text, "Level" text,
                 "Rarity" text, "FusionCards" text, "TraitsOwned" text))
         + (SELECT count(e - ARRAY['TroopId', 'Amount', 'Level', 'Rarity', 'FusionCards', 'TraitsOwned'])
            FROM jsonb_array_elements({_ARR.format(c="tr")}) AS a(e))
         + (SELECT count(t."PetId") + count(t."Amount") + count(t."Level") + count(t."XP")
                   + count(t."OrbFusionCards") + count(t."AscensionLevel") + count(t."OrbsUsed")
            FROM jsonb_to_recordset({_ARR.format(c="pe")}) AS t("PetId" text, "Amount" text, "Level" text,
                 "XP" text, "OrbFusionCards" text, "AscensionLevel" text, "OrbsUsed" jsonb))
         + (SELECT count(e - ARRAY['PetId', 'Amount', 'Level', 'XP', 'OrbFusionCards', 'OrbsUsed',
                                   'AscensionLevel'])
            FROM jsonb_array_elements({_ARR.format(c="pe")}) AS a(e))
         + (SELECT count(t."ArtifactId") + count(t."Level") + count(t."XP")
            FROM jsonb_to_recordset({_ARR.format(c="ar")}) AS t("ArtifactId" text, "Level" text, "XP" text))
         + (SELECT count(e - ARRAY['ArtifactId', 'Level', 'XP'])
            FROM jsonb_array_elements({_ARR.format(c="ar")}) AS a(e)))
{_PD}""",
}


def _timed(conn: psycopg.Connection[Any], fn: Any) -> tuple[float, float, Any]:
    pid = conn.info.backend_pid
    cpu0, t0 = _backend_cpu_s(pid), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    cpu1 = _backend_cpu_s(pid)
    return wall, (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else float("nan"), out


def _floor(dsn: str, prepared: floor.Prepared) -> tuple[float, float]:
    with psycopg.connect(dsn) as conn:
        conn.execute(floor.DDL.encode())
        conn.commit()

        def copy() -> None:
            with conn.cursor() as cur:
                for table, cols in floor.COLUMNS.items():
                    with (
                        prepared.files[table].open("rb") as src,
                        cur.copy(f"COPY {table} ({cols}) FROM STDIN".encode()) as cp,
                    ):
                        while block := src.read(1 << 20):
                            cp.write(block)
            conn.commit()

        wall, cpu, _ = _timed(conn, copy)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    """Load the corpus; alternate floor and the read variants `--repeat` times; print medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.inherent", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(snapshots=args.snapshots, users=max(10, args.snapshots // 6), mix="v1")
    res: dict[str, list[tuple[float, float]]] = {"floor": [], **{k: [] for k in VARIANTS}}
    with server(args.dsn) as srv:
        template = "bench_inherent_data"
        data_dsn, _ = corpus_db(srv, template, spec)
        prepared = floor.prepare(spec, Path("/tmp") / "sf-inherent-floor")
        print(f"{prepared.entity_rows:,} entity rows; {prepared.copy_bytes / 1e6:.1f} MB of COPY text", flush=True)
        for i in range(args.repeat):
            dsn = srv.create_db("bench_inherent_floor", template)
            srv.checkpoint()
            res["floor"].append(_floor(dsn, prepared))
            srv.drop("bench_inherent_floor")
            with psycopg.connect(data_dsn, autocommit=True) as conn:
                conn.execute("SET jit = off")
                conn.execute("SET work_mem = '64MB'")
                for name, text in VARIANTS.items():
                    wall, cpu, out = _timed(conn, lambda t=text: conn.execute(t.encode()).fetchone())
                    res[name].append((wall, cpu))
                    if i == 0:
                        print(f"  {name}: result {out[0]}", flush=True)
            print(
                f"repeat {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.3f}/{v[-1][1]:.2f}" for k, v in res.items()),
                flush=True,
            )
    fw = statistics.median(w for w, _ in res["floor"])
    print(f"\nmedians over {args.repeat} (wall s / backend CPU s), and CPU / floor wall:")
    for name, vals in res.items():
        w, c = statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)
        ratios = [v[1] / f[0] for v, f in zip(vals, res["floor"], strict=True)]
        print(
            f"  {name:14s} {w:7.3f} s  {c:6.2f} s cpu   cpu/floor-wall per pair "
            f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})"
        )
    print(f"floor wall median {fw:.3f} s; 0.45x means a run of at most {fw / 0.45:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
