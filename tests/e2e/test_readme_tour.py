"""The README's tour runs as written: every command of its code block, in order, on a fresh database, each
exiting as the README says (0, or the `exit N` of its comment; `long-running` ones, and `--follow`, run
until SIGTERM, then exit as said)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROG = "starforge-backfill"
TOKEN = "tour-token-0123456789abcdef"  # the config below holds its sha256 (the README's `serve hash-token`)


@dataclass
class Step:
    line: str
    args: list[str]
    exit_code: int
    long_running: bool


def tour(readme: str) -> list[Step]:
    """The commands of the "A tour of the runbook" code block, continuation lines joined."""
    section = readme.split("## A tour of the runbook", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    steps: list[Step] = []
    for line in block.replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        words = shlex.split(line, comments=True)
        comment = line.split(" #", 1)[1] if " #" in line else ""
        m = re.search(r"\bexit (\d+)\b", comment)
        long_running = "long-running" in comment or "--follow" in words  # runs until SIGTERM
        steps.append(Step(line, words, int(m.group(1)) if m else 0, long_running))
    return steps


def _config(tmp: Path) -> int:
    import socket

    from starforge_backfill.runbook.admin_api import token_hash

    with socket.socket() as sock:  # a free port for `serve` (8470 may be taken on a shared machine)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp / "starforge-backfill.yaml"
    path.write_text(
        f"api:\n  listen: 127.0.0.1:{port}\n"
        f"  tokens:\n    - {{name: tour, scope: admin, sha256: {token_hash(TOKEN)}}}\n"
    )
    return port


def _stays_up(proc: subprocess.Popen[str], step: Step, port: int) -> None:
    """A long-running command is up (`serve`: its /healthz answers 200) and still running after a while."""
    import urllib.request

    deadline = time.monotonic() + 30
    while step.args[1] == "serve" and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                assert resp.status == 200
                break
        except OSError:
            assert proc.poll() is None, (step.line, proc.communicate()[0])
            time.sleep(0.3)
    else:
        time.sleep(3)
    assert proc.poll() is None, (step.line, proc.communicate()[0])


def _expand(args: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """`<job>`: the newest run's job; any other `<...>` path: the one file the glob finds."""
    out = []
    for a in args:
        if a == "<job>":
            proc = subprocess.run([*_prog(), "--json", "status"], cwd=cwd, env=env, capture_output=True, text=True)
            a = next(j["job_id"] for j in json.loads(proc.stdout)["jobs"] if j["mode"] == "run")
        elif "<" in a:
            found = sorted(cwd.glob(re.sub(r"<[^>]+>", "*", a)))
            assert len(found) == 1, (a, found)
            a = str(found[0].relative_to(cwd))
        out.append(a)
    return out


def _prog() -> list[str]:
    return [sys.executable, "-m", "starforge_backfill"]


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(empty_dsn: str, tmp_path: Path) -> None:
    steps = tour((ROOT / "README.md").read_text())
    assert [s.args[1] for s in steps[1:4]] == ["db", "synth", "census"], steps[:4]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    port = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARFORGE_")}
    env |= {"PYTHONPATH": str(ROOT), "COLUMNS": "120", "HOME": str(tmp_path), "STARFORGE_PROGRESS_EVERY": "5"}
    done: list[str] = []
    for step in steps:
        if step.args[0] == "export":
            name, _, _value = step.args[1].partition("=")
            env[name] = empty_dsn  # the README's production DSN -> this test's fresh database
            continue
        assert step.args[0] == PROG, step.line
        cmd = [*_prog(), *_expand(step.args[1:], tmp_path, env)]
        stdin = TOKEN + "\n" if step.args[1:3] == ["serve", "hash-token"] else None
        if step.long_running:
            proc = subprocess.Popen(
                cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            _stays_up(proc, step, port)
            proc.send_signal(signal.SIGTERM)
            out, code = proc.communicate(timeout=60)[0], proc.returncode
        else:
            res = subprocess.run(cmd, cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True, timeout=300)
            out, code = res.stdout + res.stderr, res.returncode
        if step.args[1] == "demo":  # with the exported DSN it made a database on the test server: drop it
            from test_demo_transcript import drop_demo_database

            drop_demo_database(empty_dsn, out)
        done.append(f"{code} {step.line}")
        # later lines build on earlier ones: stop at the first that does not exit as the README says
        assert code == step.exit_code, f"{step.line}\n  exited {code}, the README says {step.exit_code}\n{out[-2500:]}"
    assert len(done) == len(steps) - 1
    import psycopg

    with psycopg.connect(empty_dsn) as conn:  # the tour did the backfill: the run's job is done, rows written
        assert conn.execute("SELECT count(*) FROM hero_snapshots").fetchone()[0] == 2000
        done_runs = "SELECT count(*) FROM backfill_jobs WHERE mode = 'run' AND status = 'done'"
        assert conn.execute(done_runs).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 100
