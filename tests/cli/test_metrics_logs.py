"""Prometheus metrics (.prom file, Pushgateway, /metrics), JSON logs and plain progress lines, end to end."""

from __future__ import annotations

import http.server
import json
import re
import signal
import threading
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opx_support import (
    FROM,
    QUIET_THROTTLE,
    TO,
    cli,
    insert_snapshots,
    job_row,
    run_cli,
    start_cli,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

from starforge_backfill.metrics import Metrics

RANGE = ["--from", FROM, "--to", TO]
RUNBOOK_NAMES = {
    "starforge_etl_snapshots_processed",
    "starforge_etl_snapshots_failed",
    "starforge_etl_processing_duration_seconds",
    "starforge_etl_batch_processing_duration_seconds",
    "starforge_etl_batch_upsert_size",
    "starforge_etl_snapshots_received",
    "starforge_etl_processing_jobs_in_progress",
    "starforge_backfill_job_progress_ratio",
    "starforge_backfill_job_rate_snapshots_per_second",
    "starforge_backfill_job_throttled",
    "starforge_backfill_job_paused",
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from Prometheus text (fails if it does not parse)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def test_run_metrics_file_matches_the_job(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 120, bad_every=10)
    prom = tmp_path / "textfile" / "backfill.prom"
    res = cli("--dsn", pg_dsn, "--metrics-file", str(prom), "--json", "run", *RANGE, "--force", "--reason", "t")
    assert res.exit_code == 1, res.output  # 10% failed on purpose: over the 1% error budget
    job = json.loads(res.stdout)
    assert (job["processed_count"], job["error_count"]) == (108, 12)

    text = prom.read_text()
    assert RUNBOOK_NAMES <= families(text)
    got = samples(text)
    jid = (("job_id", job["job_id"]),)
    assert got[("starforge_etl_snapshots_processed_total", (("result", "applied"),))] == job["processed_count"]
    assert got[("starforge_etl_snapshots_processed_total", (("result", "failed"),))] == job["error_count"]
    assert got[("starforge_etl_snapshots_failed_total", (("error_type", "PARSE_ERROR"),))] == 12
    assert got[("starforge_etl_snapshots_received_total", ())] == 120
    # per-snapshot latency: one observation per snapshot; per batch: one per batch
    assert got[("starforge_etl_processing_duration_seconds_count", ())] == 120
    batches = got[("starforge_etl_batch_processing_duration_seconds_count", ())]
    assert batches >= 1 and got[("starforge_etl_batch_upsert_size_count", ())] == batches
    rows = sum(v for (name, _labels), v in got.items() if name == "starforge_etl_rows_written_total")
    assert got[("starforge_etl_batch_upsert_size_sum", ())] == rows > 0
    assert got[("starforge_etl_processing_jobs_in_progress", ())] == 0
    assert got[("starforge_backfill_job_progress_ratio", jid)] == 1.0
    assert got[("starforge_backfill_job_paused", jid)] == 0
    assert got[("starforge_backfill_job_throttled", jid)] == 0
    assert got[("starforge_backfill_job_rate_snapshots_per_second", jid)] > 0
    assert got[("starforge_backfill_command_exit_code", (("command", "run"),))] == 1  # over the error budget
    assert not list(prom.parent.glob("*.prom.*")), "temporary files left behind (the write is not atomic)"


def test_every_command_writes_its_metrics_file_at_the_end_even_on_failure(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    res = cli("--metrics-file", str(prom), "status")  # no DSN: exit 2
    assert res.exit_code == 2
    got = samples(prom.read_text())
    assert got[("starforge_backfill_command_exit_code", (("command", "status"),))] == 2
    assert ("starforge_backfill_command_finished_timestamp_seconds", (("command", "status"),)) in got


def test_metrics_written_while_running_and_on_interrupt(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 3000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(QUIET_THROTTLE)
    prom = tmp_path / "m.prom"
    args = ["-c", str(cfg), "--dsn", pg_dsn, "--metrics-file", str(prom), "run", *RANGE, "--force", "--reason", "t"]
    proc = start_cli([*args, "--batch-size", "1"], cwd=tmp_path, STARFORGE_METRICS_EVERY="0.2")

    def applied() -> float:
        try:
            return samples(prom.read_text()).get(
                ("starforge_etl_snapshots_processed_total", (("result", "applied"),)), 0
            )
        except (FileNotFoundError, ValueError):
            return 0

    try:
        wait_for(lambda: applied() > 0, what="a metrics write while running")
        running = samples(prom.read_text())
        assert running[("starforge_etl_processing_jobs_in_progress", ())] == 1
        assert ("starforge_backfill_command_exit_code", (("command", "run"),)) not in running
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    final = samples(prom.read_text())
    assert final[("starforge_backfill_command_exit_code", (("command", "run"),))] == 130
    assert (
        final[("starforge_etl_snapshots_processed_total", (("result", "applied"),))]
        == job_row(pg_dsn)["processed_count"]
    )


def test_json_logs_parse_line_by_line(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 60, bad_every=20)
    res = run_cli(
        [
            "--dsn",
            pg_dsn,
            "--log-format",
            "json",
            "-v",
            "run",
            *RANGE,
            "--force",
            "--reason",
            "t",
            "--batch-size",
            "20",
        ],
        cwd=tmp_path,
        STARFORGE_PROGRESS_EVERY="0",
    )
    assert res.returncode == 1, res.stderr  # 5% failed on purpose: over the 1% error budget
    lines = [json.loads(line) for line in res.stderr.splitlines()]  # every line is one JSON object
    assert lines and all({"timestamp", "level", "message", "logger"} <= set(doc) for doc in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["timestamp"]) for doc in lines)
    batches = [doc for doc in lines if doc.get("event") == "batch"]
    assert batches and all({"job_id", "worker", "duration_ms", "snapshots", "failed"} <= set(d) for d in batches)
    assert all(d["level"] == "info" for d in batches)  # -v: per-batch lines at INFO
    failed = [doc for doc in lines if doc.get("event") == "snapshot_failed"]
    assert len(failed) == 3 and all(d["error_type"] == "PARSE_ERROR" and d["snapshot_id"] for d in failed)
    assert "not a payload" not in res.stderr  # never the raw payload
    progress = [doc for doc in lines if doc.get("event") == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 60
    assert res.stdout.startswith("job ")  # stdout: the human result, logs on stderr only


def test_json_log_format_from_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("logging:\n  format: json\n")
    res = run_cli(["-c", str(cfg), "status"], cwd=tmp_path)  # no DSN
    assert res.returncode == 2
    doc = json.loads(res.stderr.strip())
    assert doc["level"] == "error" and doc["message"] == "no database DSN given" and doc["exit_code"] == 2
    assert doc["hint"].startswith("pass --dsn")


def test_batch_lines_are_debug_without_verbose(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 30, bad_every=10)
    res = run_cli(["--dsn", pg_dsn, "--log-format", "json", "run", *RANGE, "--force", "--reason", "t"], cwd=tmp_path)
    assert res.returncode == 1, res.stderr  # 10% failed on purpose: over the 1% error budget
    events = [json.loads(line).get("event") for line in res.stderr.splitlines()]
    assert "batch" not in events and "snapshot_failed" not in events
    res = run_cli(["--dsn", pg_dsn, "--log-format", "json", "-vv", "status"], cwd=tmp_path)
    assert res.returncode == 0


def test_plain_progress_lines_when_not_a_terminal(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 90)
    args = ["--dsn", pg_dsn, "run", *RANGE, "--force", "--reason", "t", "--batch-size", "30"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(QUIET_THROTTLE)
    res = run_cli(["-c", str(cfg), *args], cwd=tmp_path, STARFORGE_PROGRESS_EVERY="3600")
    assert res.returncode == 0, res.stderr
    progress = [line for line in res.stderr.splitlines() if line.startswith("progress job=")]
    # the first line right away (first batch), none in between (interval 1 h), the last one at the end
    assert len(progress) == 2, res.stderr
    assert " done=30/90 (33.3%) " in progress[0] and " done=90/90 (100.0%) " in progress[1]
    assert re.search(r" failed=0 rate=[0-9.]+ snapshots/s eta=\d+s$", progress[0])

    insert_snapshots(pg_dsn, 30)  # the same range: already processed, so use --reprocess
    res = run_cli(["-c", str(cfg), "-q", *args, "--reprocess"], cwd=tmp_path, STARFORGE_PROGRESS_EVERY="0")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # --quiet: no notices, no progress


def test_pushgateway_receives_the_final_metrics(tmp_path: Path) -> None:
    received: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # pushadd_to_gateway uses POST
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(f"metrics:\n  pushgateway_url: http://127.0.0.1:{server.server_address[1]}\n  job_name: bf\n")
        res = cli("-c", str(cfg), "sql", "list")
        assert res.exit_code == 0, res.output
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    method, path, body = received[0]
    assert method == "POST" and path.startswith("/metrics/job/bf/command/sql-list/instance/")
    assert b'starforge_backfill_command_exit_code{command="sql-list"} 0.0' in body


def test_worker_serves_metrics_over_http_and_counts_batches(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 50)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO queue_jobs (type, payload) VALUES ('backfill_range', %s)",
            [psycopg.types.json.Jsonb({"from_created_at": FROM, "to_created_at": TO})],
        )
    proc = start_cli(["--dsn", pg_dsn, "worker", "--metrics-port", "0", "--poll", "0.2"], cwd=tmp_path)
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the worker did not say where its metrics are"

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return samples(resp.read().decode())

        wait_for(
            lambda: scrape().get(("starforge_etl_snapshots_processed_total", (("result", "applied"),))) == 50,
            what="the worker to process the queued range",
        )
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_metrics_registries_are_per_instance_and_weighted(tmp_path: Path) -> None:
    one, two = Metrics(command="a"), Metrics(command="b")
    one.observe_batch(
        "j", snapshots=4, applied=3, failed=1, errors_by_type={"X": 1}, rows_written={"t": 7}, duration_s=2
    )
    got = samples(one.text())
    assert got[("starforge_etl_processing_duration_seconds_count", ())] == 4
    assert got[("starforge_etl_processing_duration_seconds_sum", ())] == pytest.approx(2.0)
    assert got[("starforge_etl_processing_duration_seconds_bucket", (("le", "0.5"),))] == 4  # 2 s / 4 = 0.5 s each
    assert got[("starforge_etl_batch_upsert_size_sum", ())] == 7
    assert samples(two.text())[("starforge_etl_snapshots_received_total", ())] == 0  # nothing shared
