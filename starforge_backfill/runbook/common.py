"""What the runbook steps share: the one `Check` type, memory sampling, percentiles."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from starforge_backfill.artifacts import jsonable

MB = 1024 * 1024
PASS, FAIL, ATTESTED = "pass", "fail", "attested"


@dataclasses.dataclass
class Check:
    """One item of a step's verdict: a preflight item, a canary gate or a verification check.

    `result` is pass, fail or attested (a person vouched for it; it does not fail the step); a bool given
    there becomes pass or fail. `value` and `threshold` are the reading and the limit it was held to, where
    there is one; `warning` is worth a look without failing; `note` explains a result.
    """

    name: str
    result: str | bool
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    value: Any = None
    threshold: Any = None
    warning: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.result, bool):
            self.result = PASS if self.result else FAIL
        if self.result not in (PASS, FAIL, ATTESTED):
            raise ValueError(f"check {self.name}: result must be pass, fail or attested, not {self.result!r}")

    @property
    def passed(self) -> bool:
        """True unless the check failed (an attested item passes)."""
        return self.result != FAIL

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a check, whichever step made it."""
        return {
            "name": self.name,
            "result": self.result,
            "passed": self.passed,
            "detail": self.detail,
            "data": jsonable(self.data),
            "value": jsonable(self.value),
            "threshold": self.threshold,
            "warning": self.warning,
            "note": self.note,
        }


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
