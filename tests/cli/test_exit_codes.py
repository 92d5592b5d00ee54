"""Every documented exit code (CLI.md): 0 ok, 1 gate refused, 2 usage/config, 3 database, 4 paused, 130 Ctrl-C."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psycopg
import pytest
from opx_support import (
    FROM,
    QUIET_THROTTLE,
    TO,
    cli,
    insert_snapshots,
    job_row,
    processed_so_far,
    start_cli,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

RANGE = ["--from", FROM, "--to", TO]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./starforge-backfill.yaml, artifacts under tmp


def test_0_done(pg_dsn: str) -> None:
    res = cli("--dsn", pg_dsn, "db", "init")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("schema ready:")


def test_1_run_refused_without_preflight_and_canary(pg_dsn: str) -> None:
    insert_snapshots(pg_dsn, 5)
    res = cli("--dsn", pg_dsn, "run", *RANGE)
    assert res.exit_code == 1, res.output
    first = res.stderr.splitlines()[0]
    assert first.startswith("error: run refused: no preflight recorded for this config")
    assert "hint: run `starforge-backfill preflight` and `starforge-backfill canary` first" in res.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM backfill_jobs").fetchone() == (0,)  # nothing left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["run", "--no-such-option"], "No such option"),
        (["--metrics-file", "metrics.txt", "status"], "must end in .prom"),
        (["--log-format", "xml", "status"], "Invalid value for '--log-format'"),
    ],
)
def test_2_bad_option(args: list[str], message: str) -> None:
    res = cli(*args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr


def test_2_bad_config_file_names_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("database:\n  application_name: x\netl:\n  batch_sise: 10\n")
    res = cli("-c", str(cfg), "--dsn", "postgresql://nowhere/x", "status")
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[0] == (f"error: {cfg}:4: etl.batch_sise: unknown key (did you mean etl.batch_size?)")


def test_2_missing_dsn() -> None:
    res = cli("status")
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [
        "error: no database DSN given",
        "hint: pass --dsn, set STARFORGE_DATABASE_URL, or set database.dsn in the config file",
    ]


def test_3_unreachable_database() -> None:
    res = cli("--dsn", "postgresql://postgres@127.0.0.1:1/starforge?connect_timeout=2", "status")
    assert res.exit_code == 3, res.output
    first = res.stderr.splitlines()[0]
    assert first.startswith("error: cannot connect to the database at 127.0.0.1:1/starforge")
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["status"], ["run", *RANGE, "--force", "--reason", "test"]])
def test_3_database_without_the_schema(empty_dsn: str, args: list[str]) -> None:
    res = cli("--dsn", empty_dsn, *args)
    assert res.exit_code == 3, res.output
    assert res.stderr.splitlines()[0].startswith("error: the database lacks the expected schema")
    assert empty_dsn.split("dbname=")[-1].split()[0] in res.stderr  # names the database
    assert "hint: Have you run `starforge-backfill db init`?" in res.stderr


def test_4_job_paused_from_another_connection(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 3000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(QUIET_THROTTLE)
    args = ["-c", str(cfg), "--dsn", pg_dsn, "run", *RANGE, "--force", "--reason", "test", "--batch-size", "1"]
    proc = start_cli([*args, "--json"], cwd=tmp_path)
    try:
        wait_for(lambda: processed_so_far(pg_dsn) > 0, what="the first batch")
        job_id = job_row(pg_dsn)["job_id"]
        paused = cli("--dsn", pg_dsn, "pause", "--job-id", job_id, "--reason", "maintenance window")
        assert paused.exit_code == 0, paused.output
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, err
    doc = json.loads(out)
    assert doc["job_id"] == job_id and doc["status"] == "paused"
    assert 0 < doc["processed_count"] < 3000

    # `run` never takes over an operator's pause, even forced: it names the pause and points at `resume`
    res = cli("-c", str(cfg), "--dsn", pg_dsn, "run", "--job-id", job_id, "--force", "--reason", "go on")
    assert res.exit_code == 1 and "was paused by " in res.output and ": maintenance window" in res.output
    assert f"resume --job-id {job_id}" in res.output
    # `resume` carries on from the checkpoint (the documented way to resume a paused job)
    res = cli(
        "-c",
        str(cfg),
        "--dsn",
        pg_dsn,
        "--json",
        "resume",
        "--job-id",
        job_id,
        "--reason",
        "go on",
        "--batch-size",
        "500",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["processed_count"] == 3000


def test_4_job_paused_by_the_failure_rate_gate(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 2000, all_bad=True)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "throttle:\n  failure_rate_max: 0.01\n  failure_min_sample: 1\n  min_batch_size: 1\n  max_batch_size: 5\n"
    )
    res = cli("-c", str(cfg), "--dsn", pg_dsn, "--json", "run", *RANGE, "--force", "--reason", "t", "--batch-size", "1")
    assert res.exit_code == 4, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "paused" and "failure rate" in doc["status_reason"]
    assert doc["error_count"] < 2000


def test_130_sigint_saves_the_checkpoint(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 3000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(QUIET_THROTTLE)
    prom = tmp_path / "m.prom"
    args = ["-c", str(cfg), "--dsn", pg_dsn, "--metrics-file", str(prom), "--json"]
    proc = start_cli([*args, "run", *RANGE, "--force", "--reason", "t", "--batch-size", "1"], cwd=tmp_path)
    try:
        wait_for(lambda: processed_so_far(pg_dsn) > 0, what="the first batch")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    job = job_row(pg_dsn)
    assert job["status"] != "done" and 0 < job["processed_count"] < 3000
    assert json.loads(out)["processed_count"] == job["processed_count"]
    with psycopg.connect(pg_dsn) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM backfill_events WHERE job_id = %s", [job["job_id"]])]
    assert "interrupted" in kinds
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(prom.read_text())
        for s in family.samples
    }
    assert samples[("starforge_backfill_command_exit_code", (("command", "run"),))] == 130
    applied = samples[("starforge_etl_snapshots_processed_total", (("result", "applied"),))]
    assert applied == job["processed_count"]
