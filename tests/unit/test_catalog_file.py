"""Reading a catalog file (`catalog import`): the formats, line numbers as an editor counts them, bad records."""

from __future__ import annotations

import pytest

from starforge_backfill.errors import UsageError
from starforge_backfill.runbook.catalog_file import CatalogRecord, file_format, parse


def _rows(data: bytes, fmt: str = "csv") -> list[tuple[str, int, str, dict, int]]:
    return [(r.kind, r.id, r.name, r.meta, r.line) for r in parse(data, "f", fmt)]


def test_csv_with_a_bom_a_header_crlf_blank_lines_and_a_quoted_multiline_name() -> None:
    data = (
        '\ufeffKind, ID ,name,meta\r\n\r\ntroop, 7 , Seven ,\r\npet,2,"two\r\nlines","{""a"": [1]}"\r\nartifact,3,x\r\n'
    )
    assert _rows(data.encode()) == [
        ("troop", 7, "Seven", {}, 3),
        ("pet", 2, "two\r\nlines", {"a": [1]}, 4),
        ("artifact", 3, "x", {}, 6),
    ]


def test_a_bad_record_after_a_multiline_one_is_named_by_its_own_line() -> None:
    with pytest.raises(UsageError, match=r"^f line 3: unknown kind 'elf'"):
        parse(b'pet,2,"two\nlines"\nelf,3,x\n', "f", "csv")


def test_the_header_is_only_the_first_line() -> None:
    with pytest.raises(UsageError, match=r"^f line 2: id must be a positive integer, found 'id'"):
        parse(b"troop,1,a\nkind,id,name\n", "f", "csv")


def test_json_lines() -> None:
    data = b'{"kind": "troop", "id": 1, "name": "a", "meta": {"k": 1}}\n\n{"kind": "pet", "id": 2, "name": "b"}\n'
    assert _rows(data, "jsonl") == [("troop", 1, "a", {"k": 1}, 1), ("pet", 2, "b", {}, 3)]


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("jsonl", b'{"kind": "pet", "id": 1.0, "name": "x"}', "line 1: id must be a positive integer, found 1.0"),
        ("jsonl", b'{"kind": "pet", "id": true, "name": "x"}', "line 1: id must be a positive integer, found true"),
        ("jsonl", b'{"kind": "pet", "id": 1}', "line 1: missing name"),
        ("jsonl", b'{"kind": "pet", "id": 1, "name": "x", "Name": "y"}', "line 1: unknown key(s) Name"),
        ("jsonl", b'{"kind": "pet", "id": NaN, "name": "x"}', "line 1: not valid JSON"),
        ("jsonl", b"[1, 2]", "line 1: expected a JSON object with kind, id, name[, meta], found an array"),
        ("jsonl", b'{"kind": "pet", "id": 1, "name": 5}', "line 1: name must be a string, found a number"),
        ("csv", "troop,\u0663,x\n".encode(), "line 1: id must be a positive integer"),
        ("csv", b'troop,1,x,"{""placeholder"": true}"\n', "line 1: meta holds the key placeholder"),
        ("csv", b'troop,1,x,"{""a"": ""\\u0000""}"\n', "line 1: meta holds a NUL character"),
        ("csv", b"troop,1,ok\ntroop,2,\xff\n", "line 2: not UTF-8 text"),
        ("csv", b"troop,1,a\x00b\n", "line 1: name holds a NUL character"),
        ("jsonl", b'{"kind": "pet", "id": 1, "name": "a\\u0000"}', "line 1: name holds a NUL character"),
    ],
)
def test_bad_records(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse(data, "f", fmt)
    assert str(raised.value).startswith(f"f {message}"), str(raised.value)


def test_file_format() -> None:
    assert file_format("a/b.CSV", None) == "csv"
    assert [file_format(f"x{ext}", None) for ext in (".jsonl", ".ndjson", ".json")] == ["jsonl"] * 3
    assert file_format("-", "csv") == "csv" and file_format("x.csv", "jsonl") == "jsonl"
    with pytest.raises(UsageError):
        file_format("-", None)
    with pytest.raises(UsageError):
        file_format("x.tsv", None)


def test_records_are_frozen() -> None:
    record = CatalogRecord("troop", 1, "a", {}, 1)
    with pytest.raises(AttributeError):
        record.id = 2  # type: ignore[misc]


def test_the_example_files_hold_the_same_records() -> None:
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    csv_rows = parse((examples / "catalog.csv").read_bytes(), "catalog.csv", "csv")
    jsonl_rows = parse((examples / "catalog.jsonl").read_bytes(), "catalog.jsonl", "jsonl")
    assert len(csv_rows) == 5
    assert [(r.kind, r.id, r.name, r.meta) for r in csv_rows] == [(r.kind, r.id, r.name, r.meta) for r in jsonl_rows]
