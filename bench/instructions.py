"""`python -m bench.instructions`: CPU instructions of the stage statement, counted by valgrind, not timed.

Wall-clock comparisons on a shared VM drift by 20-30% within minutes, so a 5% change cannot be seen with a
stopwatch. This runs the statement inside a single-user PostgreSQL backend (`postgres --single`) under
`valgrind --tool=callgrind` and reports the instructions it executed: the same count for the same binary,
data and SQL, whatever else the machine does. Slow (about 50x), so it uses a few batches of the bench corpus.

Needs valgrind and the PostgreSQL server binaries (`pg_config --bindir`). As root, the scratch cluster is
created and run as the `postgres` OS user (initdb refuses root). Compare the variants it prints; a
template edited in place is measured by running this before and after the edit (or pass `--sql FILE` for a
hand-written variant, which must bind `%(ids)s::uuid[]` only).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from bench.server import init_schema
from starforge_backfill import templates
from starforge_backfill.etl.pipeline import EtlSettings, apply_in_transaction
from starforge_backfill.synthetic import SyntheticSpec, load

# Each variant: the statements a batch runs, in one transaction (the staging tables empty at commit).
VARIANTS = {
    "stage[recordset] + screen": [
        ("etl/stage.sql", {"source": "table", "elements": "recordset", "catalog_policy": "placeholder"}),
        ("etl/screen.sql", {}),
    ],
    "stage[each] + screen": [
        ("etl/stage.sql", {"source": "table", "elements": "each", "catalog_policy": "placeholder"}),
        ("etl/screen.sql", {}),
    ],
}
# `--whole`: a batch's every statement but the events and the reference path (the flagged snapshots are
# only left out, not unstaged), in the order apply_in_transaction runs them
WHOLE = [
    ("etl/stage.sql", {"source": "table", "elements": "recordset", "catalog_policy": "placeholder"}),
    ("etl/screen.sql", {}),
    ("etl/flag.sql", {}),
    ("etl/users.sql", {}),
    ("etl/usernames.sql", {}),
    ("etl/placeholders.sql", {"catalog_policy": "placeholder"}),
    ("etl/merge_entity.sql", {"entity": "troop"}),
    ("etl/merge_entity.sql", {"entity": "pet"}),
    ("etl/merge_entity.sql", {"entity": "artifact"}),
    ("etl/merge.sql", {"upsert_entities": False}),
    ("etl/sync_usernames.sql", {}),
]


def _bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
    if out and (Path(out) / "postgres").exists():
        return Path(out)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise SystemExit("no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin)")
    return found[-1].parent


def _as_owner(cmd: str, owner: str | None) -> list[str]:
    return ["su", owner, "-c", cmd] if owner else ["sh", "-c", cmd]


def _cluster(
    workdir: Path, bindir: Path, owner: str | None, snapshots: int, port: int, applied: int, mix: str = "v1"
) -> list[str]:
    """initdb, start, load the bench corpus, apply its newest `applied` snapshots with the ETL core (as a
    newest-first job's earlier batches would have), stop. Returns the other ids, newest first (as jobs go)."""
    data = workdir / "data"
    run = lambda cmd: subprocess.run(_as_owner(cmd, owner), check=True, capture_output=True)  # noqa: E731
    run(f"{bindir}/initdb -D {data} -A trust -U postgres")
    run(f"{bindir}/pg_ctl -D {data} -o '-p {port} -k {workdir} -c fsync=off' -l {workdir}/log start -w")
    try:
        dsn = f"host={workdir} port={port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = dsn.replace("dbname=postgres", "dbname=bench")
        init_schema(dsn)
        with psycopg.connect(dsn) as conn:
            load(conn, SyntheticSpec(snapshots=snapshots, users=max(10, snapshots // 6), mix=mix))
        with psycopg.connect(dsn, autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM hero_snapshots ORDER BY created_at DESC, id DESC")]
            for i in range(0, applied, 150):
                with conn.transaction():
                    apply_in_transaction(conn, ids[i : min(i + 150, applied)], EtlSettings())
            conn.execute("VACUUM (FREEZE, ANALYZE)")
        return [str(i) for i in ids[applied:]]
    finally:
        run(f"{bindir}/pg_ctl -D {data} stop -w")


def _count(workdir: Path, bindir: Path, owner: str | None, statements: list[str]) -> int:
    """Instructions callgrind counts for a single-user backend running `statements` (-j: ';' + blank line)."""
    script = workdir / "script.sql"
    script.write_text("".join(s.strip().rstrip(";") + ";\n\n" for s in statements))
    script.chmod(0o644)
    out = workdir / "callgrind.out"
    cmd = (
        f"valgrind --tool=callgrind --callgrind-out-file={out} {bindir}/postgres --single -j -D {workdir}/data "
        f"-c jit=off bench < {script} > {workdir}/single.out 2> {workdir}/valgrind.err"
    )
    subprocess.run(_as_owner(cmd, owner), check=True)
    output = (workdir / "single.out").read_text(errors="replace")
    if "ERROR:" in output:
        raise SystemExit("the statement failed: " + output[output.index("ERROR:") :][:400])
    found = re.search(r"Collected : (\d+)", (workdir / "valgrind.err").read_text())
    if not found:
        raise SystemExit("valgrind printed no instruction count: see " + str(workdir / "valgrind.err"))
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    """Build a scratch cluster with the corpus, then count each variant's instructions over the batches."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=600, help="corpus size (default 600, as `python -m bench`)")
    parser.add_argument("--batch", type=int, default=150, help="snapshots per statement (default 150)")
    parser.add_argument("--batches", type=int, default=1, help="how many batches to run, newest first (default 1)")
    parser.add_argument("--sql", action="append", default=[], help="also measure this SQL file (binds ids)")
    parser.add_argument(
        "--applied",
        type=int,
        default=0,
        help="apply the newest N snapshots first, untimed (default 0): the measured batches then meet rows "
        "that already hold newer observations, as a newest-first job's later batches do",
    )
    parser.add_argument("--port", type=int, default=5499, help="port of the scratch cluster while loading")
    parser.add_argument("--whole", action="store_true", help="also count a whole batch (stage to merge.sql)")
    parser.add_argument("--only-sql", action="store_true", help="count only the --sql files (and --whole)")
    parser.add_argument("--mix", choices=("v1", "v2"), default="v1", help="synthetic mix of shapes (default v1)")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed")
    bindir = _bindir()
    owner = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="sf-instructions-"))
    try:
        if owner:
            uid = pwd.getpwnam(owner)
            os.chown(workdir, uid.pw_uid, uid.pw_gid)
        ids = _cluster(workdir, bindir, owner, args.snapshots, args.port, args.applied, args.mix)
        batches = [ids[i : i + args.batch] for i in range(0, len(ids), args.batch)][: args.batches]
        setup = ["SET work_mem = '64MB'", templates.render("etl/stage_tables.sql")]
        steps_by = {} if args.only_sql else dict(VARIANTS)
        if args.whole:
            steps_by["whole batch (no events, no reference path)"] = WHOLE
        variants = {
            name: [templates.render(t, **{"catalog_policy": "placeholder", **ctx}) for t, ctx in steps]
            for name, steps in steps_by.items()
        }
        variants.update({Path(f).name: [Path(f).read_text()] for f in args.sql})
        base = _count(workdir, bindir, owner, setup)
        print(
            f"{len(batches)} batch(es) of {args.batch} snapshots after {args.applied} applied; "
            f"instructions beyond the setup's {base:,}:"
        )
        for name, texts in variants.items():
            stmts = []
            for b in batches:
                ids = "'{" + ",".join(b) + "}'"
                stmts += ["BEGIN", *(text.replace("%(ids)s", ids) for text in texts), "COMMIT"]
            print(f"{(_count(workdir, bindir, owner, setup + stmts) - base) / 1e9:9.3f} G  {name}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
