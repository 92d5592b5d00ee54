"""Post-backfill catalog work: list the placeholder rows the ETL made, load the authoritative catalog, and
delete the placeholders nothing uses (`catalog placeholders`, `catalog import`, `catalog cleanup`).

A placeholder is a `troop_catalog` / `pet_catalog` / `artifact_catalog` row with `meta = {"placeholder": true}`,
created by the ETL under catalog policy `placeholder` for an id the catalog lacked (sql/etl/placeholders.sql).
"""

from __future__ import annotations

import collections
import dataclasses
import getpass
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from starforge_backfill import artifacts, templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import GateFailed
from starforge_backfill.runbook import catalog_file

OUTCOMES = ("inserted", "placeholders_replaced", "updated", "unchanged", "skipped_existing")
# import.sql's outcome per record -> the counter it adds to
_COUNTER = {"placeholder_replaced": "placeholders_replaced"} | {o: o for o in OUTCOMES}
WRITTEN = ("inserted", "placeholders_replaced", "updated")
ENV_OPERATOR = "STARFORGE_OPERATOR"


def operator() -> str:
    """Who runs this: $STARFORGE_OPERATOR, else `user@host`."""
    named = os.environ.get(ENV_OPERATOR, "").strip()
    if named:
        return named
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclasses.dataclass(frozen=True)
class PlaceholderUse:
    """One placeholder catalog row and what uses it."""

    kind: str
    id: int
    name: str | None
    rows: int
    users: int

    def to_json(self) -> dict[str, Any]:
        """`{"kind", "id", "name", "rows", "users"}`."""
        return dataclasses.asdict(self)


def _uses(conn: psycopg.Connection[Any]) -> list[PlaceholderUse]:
    return [
        PlaceholderUse(r["kind"], int(r["id"]), r["name"], int(r["rows"]), int(r["users"]))
        for r in templates.fetch_all(conn, "catalog/placeholder_usage.sql")
    ]


def _by_kind(items: list[PlaceholderUse]) -> dict[str, int]:
    counts = collections.Counter(p.kind for p in items)
    return {k: counts.get(k, 0) for k in catalog_file.KINDS}


@dataclasses.dataclass
class PlaceholdersResult:
    """`catalog placeholders`: every placeholder row with the rows and users that use it."""

    placeholders: list[PlaceholderUse]

    def to_json(self) -> dict[str, Any]:
        """`catalog placeholders --json`."""
        return {"placeholders": [p.to_json() for p in self.placeholders], "counts": _by_kind(self.placeholders)}


def placeholders(cfg: Config) -> PlaceholdersResult:
    """List each placeholder catalog row with how many user_* rows, and distinct users, use it."""
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        return PlaceholdersResult(_uses(conn))


@dataclasses.dataclass
class ImportResult:
    """What `catalog import` did with each record of the file."""

    source: str
    format: str
    sha256: str
    records: int
    update: bool
    operator: str
    counts: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    changes: dict[str, list[dict[str, Any]]]
    artifact: Path

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Records whose real catalog row differs, left as it is (no --update)."""
        return self.changes["skipped_existing"]

    def to_json(self) -> dict[str, Any]:
        """`catalog import --json`."""
        return {
            "file": {"source": self.source, "format": self.format, "sha256": self.sha256, "records": self.records},
            "update": self.update,
            "operator": self.operator,
            "counts": self.counts,
            "by_kind": self.by_kind,
            "skipped": self.skipped,
            "artifact": str(self.artifact),
        }


def import_catalog(
    cfg: Config, data: bytes, *, source: str, fmt: str | None = None, update: bool = False
) -> ImportResult:
    """Load the authoritative catalog rows in `data` (CSV or JSON lines; `source` names it, `-` for stdin) in
    one transaction.

    The whole file is validated first (a bad record: UsageError naming its line, nothing applied). A placeholder
    row gets its real name and meta and loses the flag; a new id is inserted; an existing real row is left as
    it is unless `update` (and then written only when its name or meta differs). Writes a
    `catalog-import-<timestamp>.json` artifact under `<artifacts_dir>/runbook/`."""
    kind = catalog_file.file_format(source, fmt)
    label = "stdin" if source == "-" else source
    records = catalog_file.parse(data, label, kind)
    params = {
        "kinds": [r.kind for r in records],
        "ids": [r.id for r in records],
        "names": [r.name for r in records],
        "metas": [Jsonb(r.meta) for r in records],
        "update": update,
    }
    with _catalog_transaction(cfg) as conn:
        rows = templates.fetch_all(conn, "catalog/import.sql", params)
    if len(rows) != len(records):  # the statement classifies every record once
        raise RuntimeError(f"catalog/import.sql returned {len(rows)} outcome(s) for {len(records)} record(s)")
    counts = dict.fromkeys(OUTCOMES, 0)
    by_kind = {k: dict.fromkeys(OUTCOMES, 0) for k in catalog_file.KINDS}
    changes: dict[str, list[dict[str, Any]]] = {o: [] for o in OUTCOMES if o != "unchanged"}
    lines = {(r.kind, r.id): r.line for r in records}
    for row in rows:
        counter = _COUNTER[row["outcome"]]
        counts[counter] += 1
        by_kind[row["kind"]][counter] += 1
        if counter in changes:
            key = (row["kind"], int(row["id"]))
            changes[counter].append({"kind": key[0], "id": key[1], "line": lines[key]})
    res = ImportResult(
        source=label,
        format=kind,
        sha256=hashlib.sha256(data).hexdigest(),
        records=len(records),
        update=update,
        operator=operator(),
        counts=counts,
        by_kind=by_kind,
        changes=changes,
        artifact=_artifact_path(cfg, "catalog-import"),
    )
    body = res.to_json() | {"changes": changes}
    body.pop("artifact")
    artifacts.write_json(res.artifact, "catalog-import", None, body)
    return res


@dataclasses.dataclass
class CleanupResult:
    """`catalog cleanup`: the placeholders deleted (or, dry run, that would be) and the ones still in use."""

    dry_run: bool
    deleted: list[dict[str, Any]]
    in_use: list[PlaceholderUse]
    operator: str
    artifact: Path | None

    def to_json(self) -> dict[str, Any]:
        """`catalog cleanup --json`."""
        return {
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "in_use": [p.to_json() for p in self.in_use],
            "operator": self.operator,
            "artifact": None if self.artifact is None else str(self.artifact),
        }


def cleanup(cfg: Config, *, dry_run: bool = False) -> CleanupResult:
    """Delete the placeholder catalog rows no user_* row references, in one transaction; list those in use.

    Safe against a backfill running meanwhile: the catalogs are locked against writers (every ETL batch under
    policy placeholder takes a conflicting lock on them before it merges a row, so a batch either finished
    first, and its references are seen, or waits and then creates again the placeholder it needs) and the
    user_* tables against writers (one in flight is waited for); the NOT EXISTS is in the DELETE itself.
    The schema `db init` creates has no foreign keys to lean on; one a production schema has is a second
    guard (a delete it rejects rolls everything back). `dry_run`: the same lists, nothing locked or deleted."""
    who = operator()
    if dry_run:
        with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
            uses = _uses(conn)
        unused = [{"kind": p.kind, "id": p.id} for p in uses if p.rows == 0]
        return CleanupResult(True, unused, [p for p in uses if p.rows > 0], who, None)
    with _catalog_transaction(cfg, lock_usage=True) as conn:
        try:
            gone = templates.fetch_all(conn, "catalog/delete_unused.sql")
        except pg_errors.ForeignKeyViolation as exc:
            detail = (exc.diag.message_detail or "").strip()
            raise GateFailed(
                f"a placeholder is referenced through a foreign key ({exc.diag.constraint_name}): nothing deleted"
                + (f"; {detail}" if detail else ""),
                hint="that table's references are not counted by `catalog placeholders`; remove them first",
            ) from None
        in_use = _uses(conn)
    deleted = [{"kind": r["kind"], "id": int(r["id"])} for r in gone]
    path = _artifact_path(cfg, "catalog-cleanup")
    res = CleanupResult(False, deleted, in_use, who, path)
    body = res.to_json()
    body.pop("artifact")
    artifacts.write_json(path, "catalog-cleanup", None, body)
    return res


@contextmanager
def _catalog_transaction(cfg: Config, *, lock_usage: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """One transaction with the catalogs (and, with `lock_usage`, the user_* tables) locked against writers."""
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn), conn.transaction():
        try:
            templates.execute(conn, "catalog/lock_catalogs.sql")
            if lock_usage:
                templates.execute(conn, "catalog/lock_usage.sql")
        except pg_errors.LockNotAvailable:
            raise GateFailed(
                f"the catalog tables stayed locked by other sessions for longer than lock_timeout "
                f"({cfg.database.lock_timeout_s:g} s): nothing changed",
                hint="a backfill batch or another catalog command holds them; run it again",
            ) from None
        yield conn


def _artifact_path(cfg: Config, kind: str) -> Path:
    """`<artifacts_dir>/runbook/<kind>-<UTC timestamp>.json`, a new name (a counter when the second repeats)."""
    folder = Path(cfg.artifacts_dir) / "runbook"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = artifacts.utcnow().strftime("%Y%m%dT%H%M%SZ")
    path, n = folder / f"{kind}-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{kind}-{stamp}-{n}.json"
    return path
