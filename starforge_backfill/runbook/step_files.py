"""Where the steps before a job write, per database, never overwriting; and how a job keeps what it relied on.

`<artifacts>/runbook/<db slug>/<fingerprint12>/<step>-<UTC stamp>.json` is written once and never replaced;
`<step>.json` beside it is a copy of the newest (what `dry-run` reads by default). Every file names its
database. At job creation, `attach_to_job` copies the gate artifacts the run relied on into
`<job folder>/gates/` and lists them with their sha256 in `<job folder>/gates.json`; the job's manifest
(report.write_manifest, over the whole job folder) then covers them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starforge_backfill import artifacts
from starforge_backfill.artifacts import jsonable


def public_database(db: dict[str, Any]) -> dict[str, Any]:
    """The `database` every artifact carries: identifier, name, host:port/db (never a password)."""
    return {k: db[k] for k in ("system_identifier", "name", "address")}


def runbook_dir(cfg: Any, db: dict[str, Any]) -> Path:
    """`<artifacts_dir>/runbook/<db slug>/<fingerprint[:12]>/` (created if needed)."""
    path = Path(cfg.artifacts_dir) / "runbook" / db["slug"] / cfg.fingerprint()[:12]
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_new(folder: Path, step: str, data: bytes) -> Path:
    """Write `<step>-<stamp>.json` without ever replacing a file (a hard link fails on an existing name)."""
    stamp = artifacts.utcnow().strftime("%Y%m%dT%H%M%S.%fZ")
    fd, tmp = tempfile.mkstemp(prefix=f".{step}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        for n in range(1000):
            path = folder / (f"{step}-{stamp}.json" if n == 0 else f"{step}-{stamp}-{n}.json")
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"{folder}: no free name for {step}-{stamp}.json")
    finally:
        os.unlink(tmp)


def write_step(cfg: Any, db: dict[str, Any], step: str, kind: str, body: dict[str, Any]) -> Path:
    """Write a step's artifact (naming its database) as a new stamped file, then `<step>.json` as the newest;
    return the stamped path."""
    folder = runbook_dir(cfg, db)
    data = artifacts.dumps(artifacts.envelope(kind, None, {**body, "database": public_database(db)})) + b"\n"
    path = _write_new(folder, step, data)
    artifacts.write_bytes_atomic(folder / f"{step}.json", data)
    return path


def attach_to_job(cfg: Any, job_id: str, gates: list[dict[str, Any]]) -> Path:
    """Copy the artifacts of the gates a job relied on into its folder; write gates.json (with sha256)."""
    folder = artifacts.job_dir(cfg.artifacts_dir, job_id)
    listed = []
    for row in gates:
        src = Path(row["artifact"]) if row.get("artifact") else None
        entry: dict[str, Any] = {
            "gate_id": row["id"],
            "kind": row["kind"],
            "passed": row["passed"],
            "created_at": row["created_at"],
            "from_ts": row.get("from_ts"),
            "to_ts": row.get("to_ts"),
            "concurrency": row.get("concurrency"),
            "database": {"system_identifier": row.get("db_system_identifier"), "name": row.get("db_name")},
            "source": str(src) if src else None,
            "file": None,
            "sha256": None,
        }
        if src is not None and src.is_file():
            if src.parent != folder:  # a canary's artifact may already sit in its own job folder, not this one
                dest = folder / "gates" / f"{row['kind']}-{row['id']}{src.suffix}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            else:
                dest = src
            entry["file"] = str(dest.relative_to(folder))
            entry["sha256"] = artifacts.sha256_file(dest)
        listed.append(entry)
    return artifacts.write_json(folder / "gates.json", "gates", job_id, {"gates": jsonable(listed)})
