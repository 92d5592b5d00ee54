"""The `make demo` log tells the truth: each command's lines in the order they were written, one header per
command, no line cut at 80 columns, rates that count what they say (the demo on the test server, via --dsn)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


def _sections(log: str) -> dict[str, list[str]]:
    """The transcript cut at each `$ starforge-backfill <command>` header: {command: its lines}."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in log.splitlines():
        m = re.match(r"\$ starforge-backfill (\S+(?: init)?)", line)
        if m:
            current = out.setdefault(m.group(1), [])
            continue
        current.append(line)
    return out


@pytest.fixture(scope="module")
def transcript(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    workdir = tmp_path_factory.mktemp("demo-in-a-work-directory-whose-path-alone-takes-most-of-80-columns")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run(  # stdout and stderr into one file, as `make demo > demo.log 2>&1`
        [
            sys.executable,
            "-m",
            "starforge_backfill",
            "--dsn",
            server_dsn,
            "demo",
            "--snapshots",
            "150",
            "--workdir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        env=env,
    )
    drop_demo_database(server_dsn, proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout


def drop_demo_database(server_dsn: str, output: str) -> None:
    """`demo --dsn` leaves its new database on the given server (by design): the test drops it."""
    import psycopg
    from psycopg import sql

    for name in set(re.findall(r"database: (starforge_demo_\w+)", output)):
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_each_command_shows_its_progress_before_its_result(transcript: str) -> None:
    canary = _sections(transcript)["canary"]
    progress = [i for i, line in enumerate(canary) if "progress job=canary-" in line]
    verdict = [i for i, line in enumerate(canary) if re.search(r"canary canary-\S+: PASSED", line)]
    observing = [i for i, line in enumerate(canary) if "observing for" in line]
    assert progress and verdict and observing, canary
    assert progress[-1] < observing[0] < verdict[0], canary
    # one progress line at the end of the slice; none counting the observation window
    last = canary[progress[-1]]
    m = re.search(r"done=(\d+)/(\d+) .* rate=([0-9.]+) snapshots/s", last)
    assert m and m.group(1) == m.group(2), last
    assert float(m.group(3)) > 20, last  # the slice's rate, not its snapshots over the slice plus 5 s observed


def test_one_header_per_command_and_no_redundant_status(transcript: str) -> None:
    dry = _sections(transcript)["dry-run"]
    assert sum("snapshot(s) against main" in line for line in dry) == 1, dry
    assert "done (done)" not in transcript and "(stopped)" not in transcript
    assert re.search(r"job run-\S+: done$", transcript, re.M), transcript


def test_no_line_is_cut_at_80_columns(transcript: str) -> None:
    paths = [p.rstrip(";,") for p in re.findall(r"(?:artifact:?|report) +(/\S+)", transcript)]
    assert len(paths) >= 6, transcript
    for p in paths:
        assert Path(p).exists(), f"{p} (cut?)"
    assert re.search(r"^\$ starforge-backfill preflight .* --concurrency 2$", transcript, re.M), transcript
    assert max(len(line) for line in transcript.splitlines()) > 120  # long lines stay whole
