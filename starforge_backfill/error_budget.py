"""The error budget: a backfill whose failed share is over `throttle.failure_rate_max` did not succeed.

One judgement, three readers: `run` exits 1 on it (its last line says why), `verify` fails its
`error_budget` check and `report` shows it. `failed` counts snapshots that could not be applied; `handled`
counts those applied plus those failed; the budget is exceeded when `failed / handled > max_rate`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from starforge_backfill import templates


@dataclasses.dataclass(frozen=True)
class ErrorBudget:
    """How many snapshots failed against the budget, and what failed most."""

    handled: int
    failed: int
    max_rate: float
    top_type: str | None = None
    top_count: int = 0
    top_message: str | None = None

    @property
    def rate(self) -> float:
        """The failed share (0 when nothing was handled)."""
        return self.failed / self.handled if self.handled else 0.0

    @property
    def over(self) -> bool:
        """True when the failed share exceeds the budget."""
        return self.handled > 0 and self.rate > self.max_rate

    def line(self) -> str:
        """One line for an operator, e.g. `412 of 10,000 snapshots failed (4.1% > 1.0%): PARSE_ERROR 390 "..."`."""
        head = f"{self.failed:,} of {self.handled:,} snapshots failed ({self.rate:.1%}"
        if not self.over:
            return head + f" <= {self.max_rate:.1%}, within the error budget)"
        top = ""
        if self.top_type:
            top = f": {self.top_type} {self.top_count:,}" + (f' "{self.top_message}"' if self.top_message else "")
        return head + f" > {self.max_rate:.1%}){top}"

    def to_json(self) -> dict[str, Any]:
        """The judgement as `run --json`, `verify --json` and the report carry it."""
        return {
            "handled": self.handled,
            "failed": self.failed,
            "rate": round(self.rate, 6),
            "max_rate": self.max_rate,
            "over": self.over,
            "top_error_type": self.top_type,
            "top_error_count": self.top_count,
            "top_error_message": self.top_message,
            "line": self.line(),
        }


def _top_message(conn: psycopg.Connection[Any], scope: dict[str, Any], error_type: str) -> str | None:
    rows = templates.fetch_all(conn, "report/error_messages.sql", scope | {"limit": 50})
    message = next((r["message"] for r in rows if r["error_type"] == error_type), None)
    return None if message is None else str(message)[:200]


def of_job(conn: psycopg.Connection[Any], job: dict[str, Any], scope: dict[str, Any], max_rate: float) -> ErrorBudget:
    """The budget of a job from its own counters; the message from the etl_errors of its `scope`."""
    failed, processed = int(job.get("error_count") or 0), int(job.get("processed_count") or 0)
    by_type = {str(k): int(v) for k, v in (job.get("errors_by_type") or {}).items() if int(v)}
    top_type = max(sorted(by_type), key=lambda k: by_type[k]) if by_type else None
    message = _top_message(conn, scope, top_type) if top_type and failed else None
    return ErrorBudget(processed + failed, failed, max_rate, top_type, by_type.get(top_type or "", 0), message)


def of_scope(
    conn: psycopg.Connection[Any],
    counts: dict[str, Any],
    by_type: dict[str, int],
    scope: dict[str, Any],
    max_rate: float,
) -> ErrorBudget:
    """The budget of a verification scope: its processed and failed snapshot counts and failures by type."""
    failed, processed = int(counts["failed"]), int(counts["processed"])
    top_type = max(sorted(by_type), key=lambda k: by_type[k]) if by_type else None
    message = _top_message(conn, scope, top_type) if top_type and failed else None
    return ErrorBudget(processed + failed, failed, max_rate, top_type, by_type.get(top_type or "", 0), message)
