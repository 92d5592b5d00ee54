"""Small truths of the CLI (issue 15): options checked before connecting, a timestamp error with an example,
--reason only with --force, preflight's exit 3 on a database without the schema."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner

from starforge_backfill.cli import main

NOWHERE = "postgresql://nobody@127.0.0.1:1/nowhere"  # nothing listens on port 1: a connection would exit 3


def _run(*args: str) -> tuple[int, list[str]]:
    res = CliRunner().invoke(main, list(args), env={"STARFORGE_DATABASE_URL": "", "STARFORGE_OPERATOR": "t"})
    return res.exit_code, res.stderr.strip().splitlines()


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["plan"],
        ["preflight"],
        ["census"],
        ["sample"],
        ["canary"],
        ["dry-run"],
        ["reprocess", "--error-type", "PARSE_ERROR"],
    ],
)
def test_a_bad_timestamp_exits_2_before_connecting_and_shows_the_format(command: list[str]) -> None:
    code, lines = _run("--dsn", NOWHERE, *command, "--from", "yesterday", "--to", "2024-02-01")
    assert code == 2, lines
    assert lines[0] == (
        "error: --from: not an ISO-8601 timestamp: 'yesterday'"
        " (expected ISO-8601, e.g. 2024-01-01 or 2024-01-01T00:00Z)"
    )


@pytest.mark.parametrize("command", ["run", "reprocess"])
def test_reason_without_force_is_a_usage_error_and_writes_nothing(command: str, pg_dsn: str) -> None:
    extra = ["--error-type", "PARSE_ERROR"] if command == "reprocess" else []
    code, lines = _run("--dsn", pg_dsn, command, "--from", "2024-01-01", "--to", "2024-02-01", *extra, "--reason", "x")
    assert code == 2, lines
    assert lines == [
        "error: --reason goes with --force: it records why the gates were skipped",
        "hint: add --force to skip the gates (recorded with the reason), or drop --reason",
    ]
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM backfill_jobs").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM backfill_events").fetchone()[0] == 0


def test_preflight_on_a_database_without_the_schema_exits_3(empty_dsn: str, tmp_path: object) -> None:
    code, lines = _run(
        "--dsn", empty_dsn, "--artifacts-dir", str(tmp_path), "preflight", "--from", "2024-01-01", "--to", "2024-02-01"
    )
    assert code == 3, lines
    assert lines[-2].startswith("error: the database lacks the expected schema: missing users(")
    assert lines[-1] == "hint: Have you run `starforge-backfill db init`?"


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args), env={"STARFORGE_DATABASE_URL": "", "STARFORGE_OPERATOR": "t"})
    return res.exit_code, res.stdout, res.stderr


def test_plan_with_nothing_to_do_says_so_and_recommends_1(pg_dsn: str, tmp_path: object) -> None:
    code, out, err = _invoke(
        "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "plan", "--from", "2024-01-01", "--to", "2024-02-01",
        "--t-avg", "0.01",
    )  # fmt: skip
    assert code == 0, err
    assert "None" not in out
    assert "recommended: --concurrency 1 (nothing to do: no snapshot of the range waits for a run)" in out
    assert "note: nothing to do" in out and "--batch-size" not in out


@pytest.mark.parametrize("command", [["plan", "--t-avg", "0.01"], ["verify"]])
def test_json_keeps_a_human_summary_on_stderr(command: list[str], pg_dsn: str, tmp_path: object) -> None:
    code, out, err = _invoke(
        "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "--json", command[0], "--from", "2024-01-01",
        "--to", "2024-02-01", *command[1:],
    )  # fmt: skip
    assert code == 0, err
    import json

    doc = json.loads(out)
    assert err.strip().splitlines()[-1].startswith(f"{command[0]}")
    assert str(doc["artifact"]) in err


def _verify_on(pg_dsn: str, tmp_path: object, *, tty: bool, no_color: bool = False) -> str:
    """`verify`'s stdout, written to a pseudo-terminal (as on an operator's screen) or a pipe."""
    import os
    import pty
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "STARFORGE_DATABASE_URL")}
    if no_color:
        env["NO_COLOR"] = "1"
    cmd = [sys.executable, "-m", "starforge_backfill", "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "verify"]
    if not tty:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_pass_and_fail_are_coloured_on_a_terminal_only(pg_dsn: str, tmp_path: object) -> None:
    on_tty = _verify_on(pg_dsn, tmp_path, tty=True)
    assert "\x1b[32mpass\x1b[0m  processed_counts" in on_tty, repr(on_tty[:300])  # green, padding after
    for plain in (_verify_on(pg_dsn, tmp_path, tty=False), _verify_on(pg_dsn, tmp_path, tty=True, no_color=True)):
        assert "\x1b[" not in plain and "  pass  processed_counts" in plain, repr(plain[:300])


def test_runs_headline_never_repeats_the_status() -> None:
    from starforge_backfill.cli.run import headline

    assert headline("done", "done") == "done"
    assert headline("running", "interrupted") == "running; this run was interrupted, the checkpoint is saved"
    assert headline("paused", "paused") == "paused"
    assert headline("running", "pending") == "running; this run ended pending"
