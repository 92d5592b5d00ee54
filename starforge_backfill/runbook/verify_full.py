"""`verify --full`: the exhaustive, set-based parity check (every row of every user in scope), in SQL.

Users are taken in chunks (id order, a user never split, about `chunk_snapshots` processed snapshots per
chunk so memory stays bounded). For each chunk, in one transaction that writes only temporary tables:

1. every processed snapshot of those users is staged by the ETL's own statements (`pipeline.stage_exact`:
   stage.sql + screen.sql + flag.sql, and the Python reference for the flagged ones, exactly as a run; the
   same decoder and validation, so exactly as strict as the contract), nothing skipped as superseded;
2. `verify/full_link.sql` points each staged snapshot at its namecode's user;
3. `verify/full_diff.sql` re-states the write rules (newest valid observation wins) over the staged rows
   and diffs them against user_troops, user_pets, user_artifacts, user_profile_summary and users.username
   with FULL JOINs, one finding per differing column.

A processed snapshot the contract rejects is a finding too (it should have failed and written nothing).
What each mode catches (docs/DESIGN.md): full mode catches any damage to the tables, at ETL speed, but
shares the decoder with the ETL, so a decoder bug is invisible to it; sample mode (parity.py) re-derives a
few users with the independent Python reference and catches such a bug on them. No click or rich here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg

from starforge_backfill import templates
from starforge_backfill.etl import pipeline
from starforge_backfill.runbook.common import Check
from starforge_backfill.runbook.parity import _plain, _show

CHUNK_SNAPSHOTS = 1000  # processed snapshots per chunk (a user with more is a chunk of its own)
MAX_CHUNK_USERS = 5000
MIN_CHUNK_USERS = 16
MAX_KEPT = 1_000_000  # findings kept for the artifact; past that only counted
KINDS = ("changed", "missing", "unsupported", "provenance", "rejected")
_EXACT_LOADS = functools.partial(json.loads, parse_float=Decimal)
Notify = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One difference: table, the user's namecode, the row's key, the column, expected vs found."""

    kind: str
    table: str
    namecode: str | None
    key: dict[str, Any]
    column: str | None
    expected: Any
    found: Any
    user_id: uuid.UUID | None = None

    def describe(self) -> str:
        """`changed user_troops[HERO_0001, troop_id=3].amount: expected 3, found 4`."""
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        who = f"{self.namecode}, " if self.namecode else ""
        where = f"{self.table}[{who}{key}]" + (f".{self.column}" if self.column else "")
        return f"{self.kind} {where}: expected {_show(self.expected)}, found {_show(self.found)}"

    def to_json(self) -> dict[str, Any]:
        """JSON shape (docs/JSON.md, verify's check `full`)."""
        return {
            "kind": self.kind,
            "table": self.table,
            "namecode": self.namecode,
            "user_id": str(self.user_id) if self.user_id else None,
            "key": _plain(self.key),
            "column": self.column,
            "expected": _plain(self.expected),
            "found": _plain(self.found),
            "message": self.describe(),
        }


@dataclasses.dataclass
class FullResult:
    """What the full check compared and found."""

    users: int = 0
    snapshots: int = 0
    chunks: int = 0
    seconds: float = 0.0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    finding_count: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    by_table: Counter[str] = dataclasses.field(default_factory=Counter)
    rows: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    reference_path: int = 0

    def add(self, finding: Finding) -> None:
        """Count one finding (kept for the artifact up to MAX_KEPT)."""
        self.finding_count += 1
        self.by_kind[finding.kind] += 1
        self.by_table[finding.table] += 1
        if len(self.findings) < MAX_KEPT:
            self.findings.append(finding)

    @property
    def snapshots_per_s(self) -> float:
        """Re-derived snapshots per second."""
        return round(self.snapshots / self.seconds, 1) if self.seconds > 0 else 0.0

    def check(self) -> Check:
        """Verify's check `full`: passes when nothing differs."""
        compared = ", ".join(f"{t} {c['expected']}" for t, c in self.rows.items())
        data = {
            "users": self.users,
            "snapshots": self.snapshots,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "snapshots_per_s": self.snapshots_per_s,
            "reference_path": self.reference_path,
            "rows": self.rows,
            "finding_count": self.finding_count,
            "by_kind": dict(self.by_kind),
            "by_table": dict(self.by_table),
            "findings_truncated": self.finding_count > len(self.findings),
            "findings": [f.to_json() for f in self.findings],
        }
        head = f"every row of {self.users} user(s) re-derived from {self.snapshots} processed snapshot(s)"
        if not self.finding_count:
            return Check("full", True, f"{head}: no difference (rows compared: {compared or 'none'})", data)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items()))
        first = "; ".join(f.describe() for f in self.findings[:3])
        return Check("full", False, f"{self.finding_count} finding(s) ({kinds}) in {head}; first: {first}", data)


def run_full(
    conn: psycopg.Connection[Any],
    etl: pipeline.EtlSettings,
    scope_params: dict[str, Any],
    *,
    everything: bool,
    chunk_snapshots: int | None = None,
    notify: Notify | None = None,
) -> FullResult:
    """The full check over the scope (`conn` in autocommit; each chunk is its own transaction)."""
    target = CHUNK_SNAPSHOTS if chunk_snapshots is None else chunk_snapshots
    t0 = time.perf_counter()
    res = FullResult()
    totals = templates.fetch_all(conn, "verify/full_totals.sql", scope_params, everything=everything)[0]
    total_users, total_snaps = int(totals["users"]), int(totals["snapshots"])
    after: uuid.UUID | None = None
    # users looked at per chunk query: the query counts every candidate's snapshots, so it looks at about
    # twice the users the last chunk took (doubling while a chunk stays under its target), not at thousands
    # to keep a hundred
    limit = MIN_CHUNK_USERS
    while True:
        chunk = templates.fetch_all(
            conn,
            "verify/full_users.sql",
            scope_params | {"after": after, "target": target, "max_users": limit},
            everything=everything,
        )
        if not chunk:
            break
        limit = min(MAX_CHUNK_USERS, 2 * limit if len(chunk) == limit else max(MIN_CHUNK_USERS, 2 * len(chunk)))
        users = [r["user_id"] for r in chunk]
        after = users[-1]
        _chunk(conn, etl, users, res)
        res.chunks += 1
        res.users += len(users)
        if notify is not None:
            notify(f"full: {res.users}/{total_users} users, {res.snapshots}/{total_snaps} snapshots re-derived")
    res.seconds = time.perf_counter() - t0
    return res


def _chunk(conn: psycopg.Connection[Any], etl: pipeline.EtlSettings, users: list[uuid.UUID], res: FullResult) -> None:
    ids = [r[0] for r in templates.execute(conn, "verify/full_snapshots.sql", {"users": users})]
    with conn.transaction():
        staged = pipeline.stage_exact(conn, ids, etl)
        templates.execute(conn, "verify/full_link.sql", None)
        rows = templates.fetch_all(conn, "verify/full_diff.sql", {"users": users}, json_loads=_EXACT_LOADS)
    res.snapshots += len(ids)
    res.reference_path += staged.reference_path
    for r in rows:
        if r["kind"] == "rows":
            seen = res.rows.setdefault(r["tbl"], {"expected": 0, "found": 0})
            seen["expected"] += int(r["expected"])
            seen["found"] += int(r["found"])
            continue
        res.add(
            Finding(r["kind"], r["tbl"], r["namecode"], r["key"], r["col"], r["expected"], r["found"], r["user_id"])
        )
    if staged.failures:
        owners = {
            r["id"]: r
            for r in templates.fetch_all(
                conn, "verify/full_rejected.sql", {"ids": [f.snapshot_id for f in staged.failures]}
            )
        }
        for f in staged.failures:
            owner = owners.get(f.snapshot_id, {})
            res.add(
                Finding(
                    "rejected",
                    "hero_snapshots",
                    owner.get("namecode"),
                    {"id": f.snapshot_id},
                    "processed_at",
                    f"not processed ({f.error_type}: {f.message})",
                    _when(owner.get("processed_at")),
                    owner.get("user_id"),
                )
            )


def _when(value: dt.datetime | None) -> str:
    return f"processed at {value.isoformat()}" if value else "processed"
