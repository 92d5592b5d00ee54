"""Helpers the runbook steps share: the step artifact folder, client memory sampling, percentiles."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def runbook_dir(cfg: Any) -> Path:
    """`<artifacts_dir>/runbook/<fingerprint[:12]>/`: where the steps before a job write (created if needed)."""
    path = Path(cfg.artifacts_dir) / "runbook" / cfg.fingerprint()[:12]
    path.mkdir(parents=True, exist_ok=True)
    return path


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class RssSampler:
    """Samples this process's resident set size in a background thread; `peak` and `growth` in bytes.

    A thread rather than before/after readings: the ETL's peak (a parsed payload) is gone by the time it
    returns.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_rss = self.peak = self._proc.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss
        if rss > self.peak:
            self.peak = rss

    @property
    def growth(self) -> int:
        """Peak minus the RSS when sampling started (bytes, >= 0)."""
        return max(0, self.peak - self.start_rss)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


def mb(value: float | None) -> float | None:
    """Bytes as MiB, rounded to 0.1."""
    return None if value is None else round(value / MB, 1)


def elapsed(t0: float) -> float:
    """Seconds since `t0` (a perf_counter reading), rounded to the microsecond."""
    return round(time.perf_counter() - t0, 6)
