"""`--json` prints one JSON document on stdout whose top-level keys are the ones docs/JSON.md documents."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opx_support import FROM, TO, cli, insert_snapshots

JSON_MD = Path(__file__).resolve().parents[2] / "docs" / "JSON.md"
JOB_ROW = {
    "job_id",
    "mode",
    "status",
    "status_reason",
    "throttle_state",
    "from_ts",
    "to_ts",
    "batch_size",
    "concurrency",
    "total_count",
    "processed_count",
    "error_count",
    "errors_by_type",
    "placeholder_count",
    "rows_written",
    "last_checkpoint",
    "started_at",
    "finished_at",
    "owner",
    "reason",
    "config_fingerprint",
    "tool_version",
    "batch_fixed",
    "operator",
}
STATUS_EXTRA = {"state", "progress", "rate_per_s", "eta_s", "live_workers", "chunks_done", "chunks_total", "guard"}
GUARD_STATUS = {"enabled", "state", "last_reading"}
RUN_SUMMARY = {
    "outcome",
    "resumed",
    "elapsed_s",
    "processed",
    "failed",
    "failed_by_type",
    "rows_written",
    "placeholders",
    "reference_path",
    "rate_per_s",
    "error_budget",
}
RANGE = ["--from", FROM, "--to", TO]


def documented() -> dict[str, set[str]]:
    """{command heading: top-level keys} from docs/JSON.md."""
    out: dict[str, set[str]] = {}
    heading = None
    for line in JSON_MD.read_text().splitlines():
        found = re.match(r"^## `([^`]+)`", line)
        if found:
            heading = found.group(1)
        elif line.startswith("Top-level keys:") and heading:
            out[heading] = set(re.findall(r"`([^`]+)`", line))
            heading = None
    return out


@pytest.fixture(scope="module")
def docs() -> dict[str, set[str]]:
    return documented()


def test_the_doc_covers_every_command(docs: dict[str, set[str]]) -> None:
    import click

    from starforge_backfill.cli import main

    commands = set(main.list_commands(click.Context(main)))
    heads = {h.split()[0] for h in docs} | {"db", "sql", "resume", "run"}
    assert commands <= heads, f"commands without a JSON shape in docs/JSON.md: {commands - heads}"
    assert "The job row" in JSON_MD.read_text() and all(f"`{k}`" in JSON_MD.read_text() for k in JOB_ROW)


def _json(*args: str, code: int | tuple[int, ...] = 0) -> dict[str, Any]:
    res = cli(*args)
    codes = code if isinstance(code, tuple) else (code,)
    assert res.exit_code in codes, res.output
    doc = json.loads(res.stdout)  # exactly one document, nothing else on stdout
    assert isinstance(doc, dict)
    return doc


def test_shapes_match_the_doc(pg_dsn: str, tmp_path: Path, docs: dict[str, set[str]], monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("canary:\n  observe: 1s\nthrottle:\n  failure_rate_max: 0.25   # the corpus fails ~10% on purpose\n")
    base = ["-c", str(cfg), "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "art")]

    def check(heading: str, *args: str, code: int | tuple[int, ...] = 0) -> dict[str, Any]:
        doc = _json(*base, *args, "--json", code=code)
        assert set(doc) == docs[heading], f"{heading}: {sorted(set(doc) ^ docs[heading])}"
        return doc

    check("db init", "db", "init")
    insert_snapshots(pg_dsn, 60, bad_every=10)
    census = check("census", "census", *RANGE)
    assert set(census["totals"]) >= {"snapshots", "form", "envelope", "verdict", "namecode", "sizes", "failing"}
    check("sample", "sample", *RANGE, "--buckets", "2,2", "--include-bad", "2")
    check("dry-run", "dry-run")
    check("plan", "plan", *RANGE, "--t-avg", "0.01")
    check("preflight", "preflight", *RANGE, "--backup-id", "b1", code=(0, 1))
    canary = check("canary", "canary", "--namecodes", "N1,N2", *RANGE, "--observe", "1s", code=(0, 1))
    assert JOB_ROW <= set(canary["job"])

    run = _json(*base, "--json", "run", *RANGE, "--force", "--reason", "shape test")
    assert set(run) == JOB_ROW | {"run"} and set(run["run"]) == RUN_SUMMARY
    assert run["status"] == "done"
    job_id = run["job_id"]
    again_failed = ("reprocess", "--failed-of", job_id, "--force", "--reason", "shape test")
    rep = _json(*base, "--json", *again_failed, code=1)  # its PARSE_ERRORs fail again: over the budget
    assert set(rep) == JOB_ROW | docs["reprocess"] and set(rep["run"]) == RUN_SUMMARY
    assert rep["mode"] == "reprocess" and rep["reprocess"]["selected"] == rep["total_count"] == 6

    status = check("status", "status")
    assert all(set(j) == JOB_ROW | STATUS_EXTRA for j in status["jobs"])
    assert all(set(j["guard"]) == GUARD_STATUS for j in status["jobs"])
    check("guard set", "guard", "set", "hold_recover=5s", "--job-id", job_id)
    check("verify", "verify", "--job-id", job_id, code=(0, 1))
    check("report", "report", "--job-id", job_id)
    check("report --verify-manifest", "report", "--job-id", job_id, "--verify-manifest")

    assert check("pause", "pause", "--all")["jobs"] == []
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE backfill_jobs SET status = 'paused' WHERE job_id = %s", [job_id])
    resumed = check("resume --no-wait", "resume", "--job-id", job_id, "--no-wait")
    assert [set(j) for j in resumed["jobs"]] == [JOB_ROW]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE backfill_jobs SET status = 'paused' WHERE job_id = %s", [job_id])
    again = _json(*base, "--json", "resume", "--job-id", job_id)  # carries on like `run`
    assert set(again) == JOB_ROW | {"run"} and again["status"] == "done"

    check("worker", "worker", "--once")
    loaded = check("synth load", "synth", "load", "--snapshots", "5", "--seed", "3", "--force")  # 'test' rows held
    assert loaded["snapshots"] == 5 and loaded["forced"] is True and loaded["non_synthetic_before"] == 60
    assert "etl/merge.sql" in check("sql list", "sql", "list")["templates"]
    shown = check("sql show", "sql", "show", "etl/stage.sql", "--var", "source=params")
    assert "%(payloads)s" in shown["sql"] and shown["variables"] == {"source": "params"}
    statements = check("run --print-sql", "run", "--print-sql")["statements"]
    assert all(set(s) == {"name", "when", "sql"} for s in statements)


def test_error_document(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    doc = _json("--json", "status", code=2)  # no DSN
    assert set(doc) == {"error"}
    assert doc["error"] == {
        "exit_code": 2,
        "message": "no database DSN given",
        "hint": "pass --dsn, set STARFORGE_DATABASE_URL, or set database.dsn in the config file",
    }
    doc = _json("--dsn", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2", "status", "--json", code=3)
    assert doc["error"]["exit_code"] == 3 and doc["error"]["hint"].startswith("is PostgreSQL running")
