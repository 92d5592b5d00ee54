"""Helpers of the deploy/ tests: a free loopback port, and a real Prometheus started from Debian's binary."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest
import yaml


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StartPrometheus(Protocol):
    def __call__(self, rule_files: Sequence[Path], scrape: Sequence[str] = ()) -> str: ...


def prometheus_servers(tmp_path: Path) -> Iterator[StartPrometheus]:
    """start(rule_files, scrape=[host:port of workers]) -> URL of a real Prometheus (1 s scrape and evaluation)
    that loaded the rules and scrapes the targets as job `starforge-backfill-worker`; all stopped at the end."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus not found: apt-get install -y --no-install-recommends prometheus (.ci/run does)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(rule_files: Sequence[Path], scrape: Sequence[str] = ()) -> str:
        n = len(procs)
        config: dict[str, object] = {
            "global": {"evaluation_interval": "1s", "scrape_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
        }
        if scrape:
            config["scrape_configs"] = [
                {"job_name": "starforge-backfill-worker", "static_configs": [{"targets": list(scrape)}]}
            ]
        path = tmp_path / f"prometheus-{n}.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        log_path = tmp_path / f"prometheus-{n}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / f'tsdb-{n}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return url
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("prometheus did not become ready in 30 s")

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
