"""Read an authoritative catalog file for `catalog import`: CSV or JSON lines of `kind,id,name[,meta]`.

The whole file is validated before anything touches the database: the first bad record raises a `UsageError`
(exit 2) whose one line names the line number and the problem, so a bad file is never applied in part.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from starforge_backfill.errors import UsageError

KINDS = ("troop", "pet", "artifact")
FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
HEADER = ("kind", "id", "name", "meta")
ID_MAX = 2_147_483_647  # the catalogs' id is a PostgreSQL integer
JSON_KEYS = frozenset(HEADER)


@dataclasses.dataclass(frozen=True)
class CatalogRecord:
    """One authoritative catalog row, with the line of the file it came from."""

    kind: str
    id: int
    name: str
    meta: dict[str, Any]
    line: int


class BadRecord(Exception):
    """A record the file must not hold (the message names the problem, not the line)."""


def file_format(source: str, fmt: str | None) -> str:
    """The format of `source`: `fmt` when given, else from the file's extension (`-`, stdin, needs `fmt`)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r}: expected csv or jsonl")
        return fmt
    if source == "-":
        raise UsageError("reading stdin: give --format csv or --format jsonl")
    found = EXTENSIONS.get(Path(source).suffix.lower())
    if found is None:
        raise UsageError(
            f"{source}: cannot tell the format from the extension (.csv, .jsonl, .ndjson, .json)",
            hint="give --format csv or --format jsonl",
        )
    return found


def parse(data: bytes, source: str, fmt: str) -> list[CatalogRecord]:
    """Every record of `data` (`source` names it in errors), validated; raises UsageError on the first bad one."""
    text = _decode(data, source)
    records = _parse_csv(text, source) if fmt == "csv" else _parse_jsonl(text, source)
    if not records:
        raise UsageError(f"{source}: no records (expected lines of kind,id,name[,meta])")
    seen: dict[tuple[str, int], int] = {}
    for r in records:
        first = seen.setdefault((r.kind, r.id), r.line)
        if first != r.line:
            raise UsageError(f"{source} line {r.line}: duplicate {r.kind} {r.id} (first on line {first})")
    return records


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{source} line {line}: not UTF-8 text") from None


def _parse_csv(text: str, source: str) -> list[CatalogRecord]:
    out: list[CatalogRecord] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line, header_allowed = 1, True
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UsageError(f"{source} line {line}: not valid CSV ({exc})") from None
        start, line = line, reader.line_num + 1
        if not fields or all(not f.strip() for f in fields):
            continue  # a blank line
        if header_allowed:
            header_allowed = False
            if tuple(f.strip().lower() for f in fields) in (HEADER, HEADER[:3]):
                continue  # the header, on the first line that holds anything
        try:
            if len(fields) not in (3, 4):
                raise BadRecord(f"expected kind,id,name[,meta], found {len(fields)} field(s)")
            meta_text = fields[3].strip() if len(fields) == 4 else ""
            meta = _json_object(meta_text) if meta_text else {}
            out.append(_record(fields[0].strip(), _csv_id(fields[1]), fields[2], meta, start))
        except BadRecord as exc:
            raise UsageError(f"{source} line {start}: {exc}") from None
    return out


def _parse_jsonl(text: str, source: str) -> list[CatalogRecord]:
    out: list[CatalogRecord] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line, parse_constant=_reject_constant)
            except ValueError as exc:
                raise BadRecord(f"not valid JSON ({str(exc).split(':')[0]})") from None
            if not isinstance(obj, dict):
                raise BadRecord(f"expected a JSON object with kind, id, name[, meta], found {_json_type(obj)}")
            unknown = sorted(set(obj) - JSON_KEYS)
            if unknown:
                raise BadRecord(f"unknown key(s) {', '.join(unknown)} (expected kind, id, name, meta)")
            for key in HEADER[:3]:
                if key not in obj:
                    raise BadRecord(f"missing {key}")
            if not isinstance(obj["kind"], str):
                raise BadRecord(f"kind must be a string, found {_json_type(obj['kind'])}")
            if not isinstance(obj["name"], str):
                raise BadRecord(f"name must be a string, found {_json_type(obj['name'])}")
            meta = obj.get("meta")
            if meta is None:
                meta = {}
            elif not isinstance(meta, dict):
                raise BadRecord(f"meta must be a JSON object, found {_json_type(meta)}")
            out.append(_record(obj["kind"].strip(), _json_id(obj["id"]), obj["name"], _checked_meta(meta), n))
        except BadRecord as exc:
            raise UsageError(f"{source} line {n}: {exc}") from None
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _record(kind: str, ident: int, name: str, meta: dict[str, Any], line: int) -> CatalogRecord:
    if kind not in KINDS:
        raise BadRecord(f"unknown kind {kind!r} (expected troop, pet or artifact)")
    name = name.strip()
    if not name:
        raise BadRecord("empty name")
    if "\x00" in name:
        raise BadRecord("name holds a NUL character")
    return CatalogRecord(kind, ident, name, meta, line)


def _csv_id(text: str) -> int:
    value = text.strip()
    if not value.lstrip("+-").isdigit() or not value.isascii():
        raise BadRecord(f"id must be a positive integer, found {value!r}")
    return _in_range(int(value))


def _json_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord(f"id must be a positive integer, found {json.dumps(value)[:40]}")
    return _in_range(value)


def _in_range(value: int) -> int:
    if value <= 0:
        raise BadRecord(f"id must be a positive integer, found {value}")
    if value > ID_MAX:
        raise BadRecord(f"id {value} is out of range (at most {ID_MAX})")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        meta = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise BadRecord("meta is not valid JSON") from None
    if not isinstance(meta, dict):
        raise BadRecord(f"meta must be a JSON object, found {_json_type(meta)}")
    return _checked_meta(meta)


def _checked_meta(meta: dict[str, Any]) -> dict[str, Any]:
    if "placeholder" in meta:
        raise BadRecord("meta holds the key placeholder, which marks rows the ETL made up")
    if "\\u0000" in json.dumps(meta):
        raise BadRecord("meta holds a NUL character, which PostgreSQL's jsonb cannot store")
    return meta


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
