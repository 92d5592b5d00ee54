"""`serve`, the admin API: a real `starforge-backfill serve` process on a free port, called with httpx.

Tokens reach the config only through `serve hash-token` (its printed line is pasted into the YAML), so every
authenticated call here also checks that round trip. Assertions read the tables: queue_jobs, backfill_jobs,
backfill_events."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from opx_support import FROM, TO, command, insert_snapshots, start_cli, subprocess_env, wait_for

from starforge_backfill import jobs
from starforge_backfill.config import load_config

ADMIN_TOKEN = "adm-" + "a1b2c3d4" * 4
READ_TOKEN = "rd-" + "e5f6a7b8" * 4
BODY = {"from": f"{FROM}T00:00:00Z", "to": f"{TO}T00:00:00Z", "batch_size": 25, "concurrency": 2, "owner": "data-team"}


def run_cli(args: list[str], cwd: Path, input_text: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess, `input_text` on its stdin."""
    return subprocess.run(
        [*command(), *args],
        env=subprocess_env(),
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hash_line(tmp_path: Path, token: str, name: str, scope: str) -> str:
    res = run_cli(["serve", "hash-token", "--name", name, "--scope", scope], tmp_path, input_text=token + "\n")
    assert res.returncode == 0, res.stderr
    assert token not in res.stdout
    return res.stdout.rstrip("\n")


@pytest.fixture(scope="module")
def token_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The api.tokens lines `serve hash-token` prints for the admin and the read token: pasted as they are."""
    where = tmp_path_factory.mktemp("hash")
    return [hash_line(where, ADMIN_TOKEN, "ops-alice", "admin"), hash_line(where, READ_TOKEN, "dash", "read")]


def write_config(tmp_path: Path, lines: list[str]) -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("throttle:\n  enabled: false\napi:\n  tokens:\n" + "\n".join(lines) + "\n")
    return cfg


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    cfg: Path
    dsn: str

    def call(self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)


def start_server(tmp_path: Path, dsn: str, cfg: Path) -> Server:
    port = free_port()
    proc = start_cli(["-c", str(cfg), "--dsn", dsn, "serve", "--port", str(port)], tmp_path)
    server = Server(f"http://127.0.0.1:{port}", proc, cfg, dsn)

    def up() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            httpx.get(server.url + "/healthz", timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_for(up, timeout=30, what="the admin API to answer /healthz")
    return server


def stop(server: Server) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        raise
    return server.proc.returncode


@pytest.fixture
def api(pg_dsn: str, tmp_path: Path, token_lines: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.chdir(tmp_path)
    server = start_server(tmp_path, pg_dsn, write_config(tmp_path, token_lines))
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            stop(server)


def queue_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT id, type, status, payload FROM queue_jobs ORDER BY created_at").fetchall()


def events(dsn: str, job_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT kind, operator, message, details FROM backfill_events WHERE job_id = %s ORDER BY id", [job_id]
        ).fetchall()


def one_line_error(res: httpx.Response, status: int) -> str:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"]
    return str(body["error"])


def test_enqueue_then_a_worker_creates_and_finishes_the_job(api: Server, tmp_path: Path) -> None:
    insert_snapshots(api.dsn, 40)
    res = api.call("POST", "/api/v1/admin/backfill", json=BODY)
    assert res.status_code == 202, res.text
    answer = res.json()
    [(queue_id, qtype, qstatus, payload)] = queue_rows(api.dsn)
    assert answer["job_id"] == f"queue-{queue_id}" and answer["queue_id"] == str(queue_id)
    assert (qtype, qstatus) == ("backfill_range", "pending")
    assert payload == {
        "from_created_at": "2024-01-01T00:00:00+00:00",
        "to_created_at": "2024-02-01T00:00:00+00:00",
        "batch_size": 25,
        "concurrency": 2,
        "owner": "data-team",
        "reprocess": False,
        "requested_by": "ops-alice",
    }
    queued = api.call("GET", f"/api/v1/admin/backfill/{answer['job_id']}", token=READ_TOKEN)
    assert queued.status_code == 200 and queued.json()["state"] == "queued"

    worker = run_cli(["-c", str(api.cfg), "--dsn", api.dsn, "worker", "--once"], tmp_path)
    assert worker.returncode == 0, worker.stderr

    status = api.call("GET", f"/api/v1/admin/backfill/{answer['job_id']}", token=READ_TOKEN)
    assert status.status_code == 200, status.text
    job = status.json()
    assert job["job_id"] == answer["job_id"] and job["status"] == "done" and job["state"] == "done"
    assert (job["processed_count"], job["error_count"], job["batch_size"], job["owner"]) == (40, 0, 25, "data-team")
    cli_status = run_cli(["--dsn", api.dsn, "status", "--job-id", answer["job_id"], "--json"], tmp_path)
    assert json.loads(cli_status.stdout)["jobs"][0].keys() == job.keys()  # the `status --json` object
    requested = [e for e in events(api.dsn, answer["job_id"]) if e[0] == "requested"]
    assert [(e[1], e[3]["queue_id"]) for e in requested] == [("ops-alice", str(queue_id))]
    assert queue_rows(api.dsn)[0][2] == "done"


def test_tokens_no_wrong_or_without_the_scope_are_refused(api: Server) -> None:
    path = "/api/v1/admin/backfill"
    one_line_error(api.call("POST", path, token=None, json=BODY), 401)
    one_line_error(api.call("POST", path, token=ADMIN_TOKEN + "x", json=BODY), 401)
    one_line_error(api.call("POST", path, token=None, json=BODY, headers={"Authorization": ADMIN_TOKEN}), 401)
    one_line_error(api.call("POST", path, token=None, json=BODY, headers={"Authorization": "Basic YTpi"}), 401)
    one_line_error(api.call("POST", path, token=READ_TOKEN, json=BODY), 403)
    one_line_error(api.call("POST", f"{path}/queue-x/pause", token=READ_TOKEN), 403)
    one_line_error(api.call("GET", f"{path}/nope", token=None), 401)
    one_line_error(api.call("GET", "/metrics", token=None), 401)
    one_line_error(api.call("GET", f"{path}/nope", token=READ_TOKEN), 404)  # read may GET: past auth
    one_line_error(api.call("GET", "/api/v1/admin/nothing-here"), 404)
    one_line_error(api.call("DELETE", path), 405)
    assert queue_rows(api.dsn) == []


BAD_BODIES = [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps(BODY | {"priority": 9}).encode(), 422, "unknown key(s) priority"),
    (json.dumps({k: v for k, v in BODY.items() if k != "from"}).encode(), 422, "missing 'from'"),
    (json.dumps(BODY | {"from": BODY["to"], "to": BODY["from"]}).encode(), 422, "must be before to"),
    (json.dumps(BODY | {"from": "yesterday"}).encode(), 422, "from"),
    (json.dumps(BODY | {"batch_size": 0}).encode(), 422, "batch_size"),
    (json.dumps(BODY | {"batch_size": 10001}).encode(), 422, "batch_size"),
    (json.dumps(BODY | {"batch_size": "250"}).encode(), 422, "batch_size"),
    (json.dumps(BODY | {"concurrency": 257}).encode(), 422, "concurrency"),
    (json.dumps(BODY | {"concurrency": True}).encode(), 422, "concurrency"),
    (json.dumps(BODY | {"owner": " "}).encode(), 422, "owner"),
    (json.dumps(BODY | {"owner": 7}).encode(), 422, "owner"),
    (json.dumps(BODY | {"reprocess": "yes"}).encode(), 422, "reprocess"),
    (json.dumps(BODY | {"owner": "x" * 70_000}).encode(), 413, "body over 65536 bytes"),
]


def test_bad_bodies_answer_one_line_and_enqueue_nothing(api: Server) -> None:
    for body, status, says in BAD_BODIES:
        res = api.call("POST", "/api/v1/admin/backfill", content=body, headers={"Content-Type": "application/json"})
        assert says in one_line_error(res, status), body[:80]
    assert queue_rows(api.dsn) == []
    ok = api.call("POST", "/api/v1/admin/backfill", content=json.dumps(BODY).encode())  # the same, valid: taken
    assert ok.status_code == 202 and len(queue_rows(api.dsn)) == 1


def test_a_body_streamed_past_the_limit_is_refused_without_content_length(api: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"owner": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    res = api.call("POST", "/api/v1/admin/backfill", content=chunks())  # chunked: no Content-Length
    one_line_error(res, 413)
    assert queue_rows(api.dsn) == []


def test_pause_and_resume_are_recorded_with_the_tokens_name(api: Server) -> None:
    cfg = load_config(api.cfg, env={}, overrides={"database.dsn": api.dsn})
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        job = jobs.start_job(
            conn, cfg, jobs.Selector.parse(FROM, TO), mode="queue", batch_size=10, concurrency=1, reason="test"
        )
    path = f"/api/v1/admin/backfill/{job['job_id']}"
    paused = api.call("POST", f"{path}/pause")
    assert paused.status_code == 200, paused.text
    assert [j["status"] for j in paused.json()["jobs"]] == ["paused"]
    one_line_error(api.call("POST", f"{path}/pause"), 409)  # already paused: nothing changed
    resumed = api.call("POST", f"{path}/resume", json={"reason": "capacity is back"})
    assert resumed.status_code == 200, resumed.text
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT status FROM backfill_jobs WHERE job_id = %s", [job["job_id"]]).fetchone()
        trail = conn.execute("SELECT backfill_events::text FROM backfill_events").fetchall()
    assert row == ("running",)  # --no-wait: set running for the workers, nothing processed here
    acted = [(k, op, msg) for k, op, msg, _d in events(api.dsn, job["job_id"]) if k in ("paused", "resumed")]
    assert acted == [
        ("paused", "ops-alice", "paused through the admin API by ops-alice"),
        ("resumed", "ops-alice", "capacity is back"),
    ]
    assert not any(ADMIN_TOKEN in t or READ_TOKEN in t for (t,) in trail)  # the name, never the token
    one_line_error(api.call("POST", "/api/v1/admin/backfill/no-such-job/resume"), 404)
    one_line_error(api.call("POST", f"{path}/pause", content=b'{"why": 1}'), 422)


def test_metrics_and_healthz(api: Server) -> None:
    health = api.call("GET", "/healthz", token=None)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    api.call("POST", "/api/v1/admin/backfill", json=BODY)
    metrics = api.call("GET", "/metrics", token=READ_TOKEN)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert any(line.startswith("starforge_backfill_db_connections{") for line in lines)
    assert any(
        line.startswith("starforge_backfill_queue_jobs{") and 'status="pending"' in line and line.endswith(" 1.0")
        for line in lines
    )
    assert 'starforge_backfill_api_requests_total{route="enqueue",status="202"} 1.0' in lines


def test_healthz_answers_503_when_the_database_does_not(tmp_path: Path, token_lines: list[str]) -> None:
    cfg = write_config(tmp_path, token_lines)
    server = start_server(tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", cfg)
    try:
        res = server.call("GET", "/healthz", token=None)
        assert res.status_code == 503 and res.json()["status"] == "unavailable"
        one_line_error(server.call("POST", "/api/v1/admin/backfill", json=BODY), 503)
    finally:
        assert stop(server) == 0  # SIGTERM: a clean stop


def test_serve_refuses_to_start_without_tokens_or_on_a_taken_port_and_hash_token_refuses_short_tokens(
    tmp_path: Path, token_lines: list[str]
) -> None:
    res = run_cli(["--dsn", "postgresql://x@127.0.0.1/x", "serve", "--port", str(free_port())], tmp_path)
    assert res.returncode == 2 and "api.tokens is empty" in res.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli(
            ["-c", str(write_config(tmp_path, token_lines)), "serve", "--port", str(taken.getsockname()[1])], tmp_path
        )
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1:" in busy.stderr
    short = run_cli(["serve", "hash-token", "--name", "a"], tmp_path, input_text="short\n")
    assert short.returncode == 2 and "shorter than 16" in short.stderr and short.stdout == ""
    shaped = run_cli(["serve", "hash-token", "--name", "a", "--json"], tmp_path, input_text=ADMIN_TOKEN)
    doc = json.loads(shaped.stdout)
    assert set(doc) == {"name", "scope", "sha256", "yaml"}  # docs/JSON.md, `serve hash-token`
    assert doc["sha256"] == hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    assert doc["yaml"].strip() == f"- {{name: a, scope: admin, sha256: {doc['sha256']}}}"
