"""The backfill's connection budget: one rule, read by `run`, `preflight` and `plan`.

A job of concurrency C holds C worker connections plus one control connection. Together they must stay
within `database.max_connections_share` of the server's `max_connections`, so that production keeps the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from starforge_backfill import templates
from starforge_backfill.db import the_row
from starforge_backfill.errors import UsageError


def connections_for(concurrency: int) -> int:
    """Connections a job of `concurrency` workers holds: one each, plus the control connection."""
    return concurrency + 1


@dataclasses.dataclass(frozen=True)
class Capacity:
    """The server's connection figures and the backfill's share of them."""

    max_connections: int
    in_use: int
    superuser_reserved: int
    share: float

    @property
    def budget(self) -> int:
        """Connections the backfill may hold: `max_connections * share`, rounded down."""
        return int(self.max_connections * self.share)

    @property
    def max_concurrency(self) -> int:
        """The largest concurrency whose connections fit the budget (0 when none does)."""
        return max(self.budget - connections_for(0), 0)

    @property
    def free(self) -> int:
        """Connections that non-superusers can still open right now."""
        return self.max_connections - self.superuser_reserved - self.in_use

    def fits(self, concurrency: int) -> bool:
        """True when `concurrency` workers (+1 control connection) stay within the budget."""
        return connections_for(concurrency) <= self.budget

    def require(self, concurrency: int) -> None:
        """Refuse (UsageError, exit 2) a concurrency over the budget."""
        if not self.fits(concurrency):
            raise UsageError(
                f"concurrency {concurrency} (+1 control connection) exceeds the backfill's share of max_connections"
                f" ({self.budget} of {self.max_connections} at database.max_connections_share={self.share})",
                hint="lower --concurrency or raise database.max_connections_share",
            )

    def to_json(self) -> dict[str, Any]:
        """The figures, as preflight and plan record them."""
        return {
            "max_connections": self.max_connections,
            "in_use": self.in_use,
            "superuser_reserved": self.superuser_reserved,
            "share": self.share,
            "budget": self.budget,
        }


def read(conn: psycopg.Connection[Any], share: float) -> Capacity:
    """The server's connection figures now (`sql/runbook/capacity.sql`)."""
    max_conn, in_use, reserved = the_row(templates.execute(conn, "runbook/capacity.sql"))
    return Capacity(int(max_conn), int(in_use), int(reserved), share)
