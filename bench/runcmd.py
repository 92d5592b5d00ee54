"""The project's `run` as an operator starts it: a subprocess, timed, its process tree's RSS polled."""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

POLL_S = 0.05


class RunUnavailable(RuntimeError):
    """The `run` command cannot be started (not written yet, or not installed)."""


# The bench measures throughput, not the safety gates: its data is ~1% malformed by design (the default
# failure-rate gate would pause the job), and a run of seconds would never leave the first ramp step.
CONFIG = """# written by the bench
throttle:
  failure_rate_max: 1.0
{throttle}gates:
  ramp: [{concurrency}]
"""


def command(dsn: str, artifacts_dir: Path, concurrency: int, config: Path) -> list[str]:
    """The command line the bench runs."""
    script = Path(sys.executable).parent / "starforge-backfill"
    if importlib.util.find_spec("starforge_backfill.cli") is None:
        raise RunUnavailable("starforge_backfill/cli/ does not exist (yet): `run` cannot be measured")
    if not script.exists():
        raise RunUnavailable(f"{script} is missing: reinstall the package (`make install`)")
    # --json is a global option (docs CLI.md), so it goes before the subcommand
    return [
        str(script),
        "-c",
        str(config),
        "--dsn",
        dsn,
        "--artifacts-dir",
        str(artifacts_dir),
        "--json",
        "run",
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2100-01-01T00:00:00Z",
        "--concurrency",
        str(concurrency),
        "--force",
        "--reason",
        "bench",
    ]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def config_text(concurrency: int, extra_config: str = "", throttle: dict[str, str] | None = None) -> str:
    """The bench's config: `throttle` adds `key: value` lines to its throttle section (`--throttle`)."""
    lines = "".join(f"  {k}: {v}\n" for k, v in (throttle or {}).items())
    return CONFIG.format(concurrency=concurrency, throttle=lines) + extra_config


def measure(
    dsn: str,
    artifacts_dir: Path,
    concurrency: int,
    logdir: Path,
    extra_config: str = "",
    throttle: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the command; return wall seconds, peak tree RSS, ru_maxrss, exit code and its JSON report.
    `extra_config`: YAML sections appended to the bench's config (run_noevents: `events: {enabled: false}`);
    `throttle`: keys added to its throttle section."""
    logdir.mkdir(parents=True, exist_ok=True)
    config = logdir / "bench-config.yaml"
    config.write_text(config_text(concurrency, extra_config, throttle))
    cmd = command(dsn, artifacts_dir, concurrency, config)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / "run.stdout", logdir / "run.stderr"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(POLL_S)
        seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; max over all children
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    try:
        report = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        report = None
    result = {
        "seconds": seconds,
        "exit_code": proc.returncode,
        "peak_rss_mb": round(peak / 2**20, 1),
        "ru_maxrss_mb": round(after / 1024, 1) if after > before else None,
        "command": " ".join([*cmd[:3], "--dsn", "<dsn>", *cmd[5:]]),
        "config": config.read_text(),
        "report": report,
    }
    if proc.returncode != 0 or report is None:
        result["stderr_tail"] = stderr[-2000:]
        if report is None:
            result["stdout_head"] = stdout[:1000]
    return result
