"""Audit artifacts: versioned JSON files under `<artifacts-dir>/<job_id>/`, written atomically."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from starforge_backfill import __version__

SCHEMA_VERSION = 1


def utcnow() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


def envelope(kind: str, job_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """Wrap an artifact body with the metadata every artifact carries."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "tool": "starforge-backfill",
        "tool_version": __version__,
        "generated_at": utcnow().isoformat(),
        "job_id": job_id,
        **body,
    }


def job_dir(root: Path, job_id: str) -> Path:
    """The artifact folder of one job (created if needed)."""
    path = Path(root) / job_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(data: Any) -> bytes:
    """Stable, pretty JSON bytes (datetimes and UUIDs handled)."""
    return orjson.dumps(data, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write a file so that readers never see it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return path


def write_json(path: Path, kind: str, job_id: str | None, body: dict[str, Any]) -> Path:
    """Write one versioned JSON artifact atomically."""
    return write_bytes_atomic(path, dumps(envelope(kind, job_id, body)) + b"\n")


def read_json(path: Path, kind: str | None = None) -> dict[str, Any]:
    """Read an artifact, checking its schema version (and kind when given)."""
    data = json.loads(Path(path).read_text())
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: unsupported artifact schema_version {data.get('schema_version')!r}")
    if kind is not None and data.get("kind") != kind:
        raise ValueError(f"{path}: expected a {kind} artifact, found {data.get('kind')!r}")
    return data


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def jsonable(value: Any) -> Any:
    """Datetimes, UUIDs and Decimals made JSON-ready, recursively."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
