"""The deploy/ tests reuse the CLI tests' helpers (snapshots made in SQL, the CLI in-process and as a subprocess)
and start real Prometheus servers (`start_prometheus`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import StartPrometheus, prometheus_servers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # opx_support


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """A real Prometheus per call (see deploy_support.prometheus_servers); stopped after the test."""
    yield from prometheus_servers(tmp_path)
