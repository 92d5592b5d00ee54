"""`quarantine push` and `quarantine.s3_url` through the CLI: JSON shape and exit codes against a real moto
server (tests/s3_support.py), the one-line errors without an S3 URL or without boto3."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psycopg
from opx_support import FROM, TO, cli, insert_snapshots, run_cli
from s3_support import MotoServer, objects
from test_json_shapes import documented

BUCKET = "sf-cli-quarantine"


def _config(tmp_path: Path, endpoint: str, s3: bool = True) -> list[str]:
    cfg = tmp_path / "cfg.yaml"
    text = "throttle:\n  failure_rate_max: 0.5\n"
    if s3:
        text += f"quarantine:\n  s3_url: s3://{BUCKET}/q\n  endpoint_url: {endpoint}\n  region: us-east-1\n"
        text += "  upload_attempts: 1\n  upload_timeout: 2s\n"
    cfg.write_text(text)
    return ["-c", str(cfg), "--artifacts-dir", str(tmp_path / "art")]


def test_push_prints_the_documented_shape_and_exits_1_while_copies_stay_local(
    pg_dsn: str, tmp_path: Path, moto: MotoServer
) -> None:
    insert_snapshots(pg_dsn, 20, bad_every=5)
    base = [*_config(tmp_path, moto.url), "--dsn", pg_dsn]
    run = cli(*base, "--json", "run", "--from", FROM, "--to", TO, "--force", "--reason", "cli test")
    assert run.exit_code == 0, run.output
    doc = json.loads(run.stdout)
    job_id = doc["job_id"]
    assert doc["run"]["quarantine_uploads"]["local_only"] == 4  # no bucket yet: every upload refused
    assert "quarantine copies: 0 uploaded to s3://sf-cli-quarantine/q, 4 local only" in run.stderr

    res = cli(*base, "quarantine", "push", "--job-id", job_id, "--json")
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert set(out) == documented()["quarantine push"]
    assert (out["uploaded"], out["local_only"]) == (0, 4) and "NoSuchBucket" in out["local_only_copies"][0]["error"]

    moto.client().create_bucket(Bucket=BUCKET)
    res = cli(*base, "quarantine", "push", "--job-id", job_id)
    assert res.exit_code == 0, res.output
    assert f"job {job_id}: 4 copy(ies) uploaded to s3://{BUCKET}/q, 0 local only" in res.stdout
    assert len(objects(moto.client(), BUCKET)) == 4
    for secret in ("testing-secret-key", "testing-session-token"):  # credentials never printed or written
        assert secret not in res.output + run.output
        assert not any(secret.encode() in p.read_bytes() for p in (tmp_path / "art").rglob("*") if p.is_file())


def test_push_without_an_s3_url_is_a_usage_error(pg_dsn: str, tmp_path: Path) -> None:
    res = cli(*_config(tmp_path, "", s3=False), "--dsn", pg_dsn, "quarantine", "push", "--job-id", "x")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: quarantine.s3_url is not set: there is nowhere to push to\nhint: ")


def test_an_s3_url_without_boto3_is_a_usage_error_before_anything_is_written(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path, aws_env: Any
) -> None:
    insert_snapshots(pg_dsn, 5, bad_every=2)
    shadow = tmp_path / "no-boto3"
    (shadow / "boto3").mkdir(parents=True)
    (shadow / "boto3" / "__init__.py").write_text('raise ImportError("No module named boto3")\n')
    pythonpath = os.pathsep.join([str(shadow), *filter(None, [os.environ.get("PYTHONPATH")])])
    args = [*_config(tmp_path, "http://127.0.0.1:9"), "--dsn", pg_dsn, "run", "--from", FROM, "--to", TO]
    res = run_cli([*args, "--force", "--reason", "no boto3"], tmp_path, env={"PYTHONPATH": pythonpath})
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0] == "error: quarantine.s3_url is set but boto3 is not installed", res.stderr
    assert lines[1].startswith("hint: pip install 'starforge-backfill[s3]'")
    assert pg_conn.execute("SELECT count(*) FROM backfill_jobs").fetchone()[0] == 0
    assert pg_conn.execute("SELECT count(*) FROM etl_errors").fetchone()[0] == 0
