"""Operator experience: no password anywhere, a fast `--help`, lazy imports, the `sql` group, `run --print-sql`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from opx_support import FROM, PASSWORD, TO, cli, command, insert_snapshots, run_cli, subprocess_env
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

RANGE = ["--from", FROM, "--to", TO]


@pytest.fixture
def pw_dsn(pg_dsn: str, server_dsn: str) -> Iterator[str]:
    """This test's database, reached as a role of its own with a password (trust auth: accepted, not
    checked). The role is dropped afterwards: a superuser with a known password must not outlive the test."""
    role = f"sf_pw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), PASSWORD))
    info = conninfo_to_dict(pg_dsn)
    try:
        host, port = info.get("host") or "localhost", info.get("port") or 5432
        yield f"postgresql://{role}:{PASSWORD}@{host}:{port}/{info['dbname']}"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # what the CLI created as that role
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_no_password_in_any_output_or_file(pw_dsn: str, tmp_path: Path) -> None:
    art, prom = tmp_path / "art", tmp_path / "metrics" / "m.prom"
    insert_snapshots(pw_dsn, 40, bad_every=5)  # failures: quarantine files and etl_errors too
    info = conninfo_to_dict(pw_dsn)
    kv_dsn = make_conninfo("", **info)  # key=value form: password=s3cr3t-pw
    unreachable = f"postgresql://sf_pw:{PASSWORD}@127.0.0.1:1/starforge?connect_timeout=2"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"database:\n  dsn: '{pw_dsn}'\nmetrics:\n  pushgateway_url: http://ops:{PASSWORD}@127.0.0.1:1\n")
    common = ["--artifacts-dir", str(art), "--metrics-file", str(prom)]
    runs: list[tuple[list[str], dict[str, str], tuple[int, ...]]] = [
        (["--dsn", pw_dsn, "-v", "--log-format", "json", "db", "init", "--json"], {}, (0,)),
        # 20% of the snapshots fail on purpose: over the error budget, the run exits 1 (its line names no password)
        (["-vv", "--log-format", "json", "--json", "run", *RANGE, "--force", "--reason", "x"], {"dsn": pw_dsn}, (1,)),
        (["--dsn", kv_dsn, "-v", "status"], {}, (0,)),
        (["-v", "--json", "status"], {"env": pw_dsn}, (0,)),
        (["-c", str(cfg), "-vv", "--log-format", "json", "status", "--json"], {}, (0,)),
        (["--dsn", unreachable, "-v", "status"], {}, (3,)),
        (
            ["--dsn", unreachable, "-v", "--log-format", "json", "--json", "run", *RANGE, "--force", "--reason", "x"],
            {},
            (3,),
        ),
        (["--dsn", f"postgresql://sf_pw:{PASSWORD}@127.0.0.1:notaport/x", "-v", "status"], {}, (2, 3)),
        (["--dsn", pw_dsn, "--json", "run", "--print-sql"], {}, (0,)),
        (["-c", str(cfg), "--json", "sql", "show", "etl/flag.sql"], {}, (0,)),
    ]
    for args, how, codes in runs:
        env = {"STARFORGE_DATABASE_URL": how["env"]} if "env" in how else {}
        full = [*common, "--dsn", how["dsn"], *args] if "dsn" in how else [*common, *args]
        res = run_cli(full, cwd=tmp_path, env=env)
        assert res.returncode in codes, (args, res.stderr)
        assert PASSWORD not in res.stdout, args
        assert PASSWORD not in res.stderr, args
        if "-v" in args and res.returncode == 3:
            assert "Traceback" in res.stderr  # -v shows the traceback, scrubbed all the same
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "cfg.yaml"]
    assert any(p.suffix == ".json" for p in (art).rglob("*"))  # the run wrote artifacts
    assert any("quarantine" in p.parts for p in files)
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_database_errors_name_host_and_database_not_password(pw_dsn: str, tmp_path: Path) -> None:
    info = conninfo_to_dict(pw_dsn)
    missing_db = pw_dsn.rsplit("/", 1)[0] + "/no_such_db_here"
    res = cli("--dsn", missing_db, "status")
    assert res.exit_code == 3
    first = res.stderr.splitlines()[0]
    assert f"{info['host']}:{info['port']}/no_such_db_here" in first and PASSWORD not in res.stderr


def test_help_is_fast() -> None:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        res = subprocess.run([*command(), "--help"], env=subprocess_env(), capture_output=True, text=True, timeout=30)
        times.append(time.perf_counter() - started)
        assert res.returncode == 0 and "Usage:" in res.stdout
    assert min(times) < 0.4, f"--help took {min(times):.3f} s at best"


def test_importing_the_cli_and_help_import_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "import starforge_backfill.cli as cli\n"
        "heavy = ('psycopg', 'rich', 'jinja2', 'prometheus_client', 'sqlglot')\n"
        "after_import = [m for m in heavy if m in sys.modules]\n"
        "try:\n"
        "    cli.main(['--help'], prog_name='starforge-backfill')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(after_import, [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "[] []"


def test_sql_list_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    listed = cli("sql", "list")
    assert listed.exit_code == 0 and {"etl/merge.sql", "jobs/next_batch.sql"} <= set(listed.stdout.split())

    raw = cli("sql", "show", "etl/flag.sql", "--raw")
    pretty = cli("sql", "show", "etl/flag.sql")
    assert raw.exit_code == pretty.exit_code == 0
    assert raw.stdout.startswith("-- Finish the staging verdict") and "ok IS NOT TRUE" in raw.stdout
    assert pretty.stdout.startswith("/* Finish the staging verdict") and pretty.stdout != raw.stdout

    strict = tmp_path / "fail.yaml"
    strict.write_text("etl:\n  catalog_policy: fail\n")
    with_fail = cli("-c", str(strict), "sql", "show", "etl/flag.sql", "--raw")
    assert with_fail.exit_code == 0 and with_fail.stdout != raw.stdout  # rendered with the current config

    params = cli("--json", "sql", "show", "etl/stage.sql", "--var", "source=params")
    assert params.exit_code == 0 and "%(payloads)s" in json.loads(params.stdout)["sql"]

    unknown = cli("sql", "show", "merge.sql")
    assert unknown.exit_code == 2
    assert unknown.stderr.splitlines()[0] == "error: no SQL template 'merge.sql'"
    assert "etl/merge.sql" in unknown.stderr  # did you mean
    bad_var = cli("sql", "show", "etl/flag.sql", "--var", "no-equals-sign")
    assert bad_var.exit_code == 2 and "expected KEY=VALUE" in bad_var.stderr


def test_run_print_sql_needs_no_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli("--dsn", "postgresql://postgres@127.0.0.1:1/nowhere", "run", "--print-sql", *RANGE)
    assert res.exit_code == 0, res.output
    names = [line.split(":")[0][3:] for line in res.stdout.splitlines() if line.startswith("-- ") and ".sql" in line]
    assert names[0] == "jobs/find_resumable.sql" and "gates/latest.sql" in names
    assert (
        names.index("etl/stage.sql[source=table][elements=recordset]")
        < names.index("etl/merge_entity.sql[entity=troop]")
        < names.index("etl/merge.sql[upsert_entities=false]")
        < names.index("jobs/checkpoint.sql")
    )
    assert "etl/placeholders.sql" in names and "etl/missing_catalog_ids.sql" not in names

    strict = tmp_path / "fail.yaml"
    strict.write_text("etl:\n  catalog_policy: fail\n")
    forced = cli("-c", str(strict), "--json", "run", "--print-sql", "--force")
    statements = [s["name"] for s in json.loads(forced.stdout)["statements"]]
    assert "etl/missing_catalog_ids.sql" in statements and "etl/placeholders.sql" not in statements
    assert "gates/latest.sql" not in statements  # --force skips the gates


def test_log_lines_are_scrubbed_whatever_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from starforge_backfill import logs

    log = logging.getLogger("starforge_backfill.test")
    try:
        for fmt in ("human", "json"):
            logs.setup_logging(fmt, "info", secrets=[PASSWORD])
            log.info("connecting with %s", f"password={PASSWORD} host=db")
            log.warning("retrying postgresql://ops:hunter2@db.internal/x", extra={"job_id": "j1", "hint": "wait"})
            log.debug("not shown at info")
        err = capsys.readouterr().err
    finally:
        logging.getLogger(logs.PACKAGE_LOGGER).removeHandler(logs.current_handler())  # type: ignore[arg-type]
    assert PASSWORD not in err and "hunter2" not in err and "not shown" not in err
    human, warning, hint, first, second = err.splitlines()
    assert human == "connecting with password=*** host=db"
    assert warning == "warning: retrying postgresql://ops:***@db.internal/x" and hint == "hint: wait"
    assert json.loads(first)["message"] == "connecting with password=*** host=db"
    doc = json.loads(second)
    assert (doc["level"], doc["job_id"], doc["hint"]) == ("warning", "j1", "wait")


def test_sql_show_keeps_every_comment_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlglot drops a comment that trails code (`newest AS (  -- each user's ...` lost its first line) or sits
    before some keywords: `sql show` keeps every line of every comment, pretty-printed or as rendered."""
    from starforge_backfill import sqlview

    monkeypatch.chdir(tmp_path)
    merge = cli("sql", "show", "etl/merge.sql")
    assert merge.exit_code == 0 and merge.stdout.startswith("/* Merge the staged ok snapshots")
    assert "each user's newest staged snapshot, unless the summary already holds a newer one" in merge.stdout
    for name in ("etl/merge.sql", "etl/stage.sql", "etl/flag.sql", "jobs/next_batch.sql"):
        shown = cli("--json", "sql", "show", name)
        doc = json.loads(shown.stdout)
        text = " ".join((doc["pretty"] or doc["sql"]).split())
        for line in doc["sql"].splitlines():
            at = sqlview._comment_start(line)
            if at >= 0:
                assert " ".join(line[at + 2 :].split()) in text, (name, line)
