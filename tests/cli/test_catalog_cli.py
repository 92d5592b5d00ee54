"""`catalog placeholders | import | cleanup` through the CLI: exit codes, the lines operators read, --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from catalog_support import MISSING_PET, backfill_with_placeholders, catalog_rows, make_cfg
from click.testing import CliRunner
from runbook_post_corpus import MISSING_TROOP
from test_json_shapes import documented

from starforge_backfill.cli import main


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path) -> Any:
    """Invoke the CLI against a backfilled database with placeholders: returns the click Result."""
    backfill_with_placeholders(pg_dsn, make_cfg(pg_dsn, tmp_path / "art"))

    def invoke(*args: str, stdin: str | None = None) -> Any:
        base = ["--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "art")]
        env = {"STARFORGE_DATABASE_URL": None, "COLUMNS": "200", "STARFORGE_OPERATOR": "ops:dave"}
        return CliRunner().invoke(main, [*base, *args], input=stdin, catch_exceptions=False, env=env)

    return invoke


def test_placeholders_table_and_json(cli: Any) -> None:
    res = cli("catalog", "placeholders")
    assert res.exit_code == 0, res.output
    lines = [line.split() for line in res.stdout.splitlines()]
    assert [x for x in lines if x[:2] == ["│", "pet"]] == [["│", "pet", "│", str(MISSING_PET), "│", "2", "│", "2", "│"]]
    assert "4 placeholder(s), 2 unused" in res.stdout
    doc = json.loads(cli("catalog", "placeholders", "--json").stdout)
    assert [(p["kind"], p["id"], p["rows"], p["users"]) for p in doc["placeholders"]] == [
        ("artifact", 700, 0, 0),
        ("pet", MISSING_PET, 2, 2),
        ("troop", 998, 0, 0),
        ("troop", MISSING_TROOP, 1, 1),
    ]


def test_import_from_a_file_and_from_stdin(cli: Any, pg_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(f"kind,id,name\ntroop,{MISSING_TROOP},Storm Giant\npet,40,Fresh Pet\ntroop,6,Renamed\n")
    res = cli("catalog", "import", str(path))
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[0]
    assert first.startswith(f"catalog import {path} (csv, 3 record(s), sha256 ")
    assert first.endswith(
        "inserted 1, placeholders replaced 1, updated 0, unchanged 0, skipped (differ, no --update) 1"
    )
    assert (
        "note: left as they are (their real rows differ from the file): troop 6; --update overwrites them" in res.stdout
    )
    line = json.dumps({"kind": "pet", "id": MISSING_PET, "name": "Ember", "meta": {"element": "fire"}})
    res = cli("catalog", "import", "-", "--format", "jsonl", "--json", stdin=line + "\n")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["file"]["source"] == "stdin" and doc["counts"]["placeholders_replaced"] == 1
    assert doc["operator"] == "ops:dave"
    assert catalog_rows(pg_dsn)[("pet", MISSING_PET)][:2] == ("Ember", {"element": "fire"})
    res = cli("catalog", "import", str(path), "--update", "--json")
    assert json.loads(res.stdout)["counts"]["updated"] == 1
    assert catalog_rows(pg_dsn)[("troop", 6)][0] == "Renamed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "troop,1,troop_catalog 1\ndragon,5,Smaug\n",
            "error: bad.csv line 2: unknown kind 'dragon' (expected troop, pet or artifact)",
        ),
        ("troop,1,troop_catalog 1\n\ntroop,-1,x\n", "error: bad.csv line 3: id must be a positive integer, found -1"),
        (f"troop,{MISSING_TROOP},Giant\npet,4,\n", "error: bad.csv line 2: empty name"),
        ("troop,2,Two\ntroop,2,Two\n", "error: bad.csv line 2: duplicate troop 2 (first on line 1)"),
    ],
    ids=["kind", "id", "name", "duplicate"],
)
def test_a_bad_file_exits_2_with_one_line_naming_the_line(
    cli: Any, pg_dsn: str, tmp_path: Path, monkeypatch: Any, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.csv").write_text(text)
    before = catalog_rows(pg_dsn)
    res = cli("catalog", "import", "bad.csv")
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [message] and res.stdout == ""
    assert catalog_rows(pg_dsn) == before
    doc = json.loads(cli("catalog", "import", "bad.csv", "--json").stdout)
    assert doc["error"]["exit_code"] == 2 and doc["error"]["message"] == message.removeprefix("error: ")
    assert not list((tmp_path / "art" / "runbook").glob("catalog-import-*"))


def test_usage_errors(cli: Any, tmp_path: Path) -> None:
    res = cli("catalog", "import", str(tmp_path / "absent.csv"))
    assert res.exit_code == 2 and res.stderr.startswith(f"error: cannot read {tmp_path / 'absent.csv'}: ")
    res = cli("catalog", "import", "-", stdin="troop,1,x\n")
    assert (
        res.exit_code == 2 and res.stderr.splitlines()[0] == "error: reading stdin: give --format csv or --format jsonl"
    )


def test_cleanup_dry_run_then_cleanup(cli: Any, pg_dsn: str) -> None:
    before = catalog_rows(pg_dsn)
    res = cli("catalog", "cleanup", "--dry-run")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "would delete 2 unused placeholder(s): artifact 700, troop 998"
    assert "placeholders still in use" in res.stdout and catalog_rows(pg_dsn) == before
    res = cli("catalog", "cleanup")
    assert res.stdout.splitlines()[0] == "deleted 2 unused placeholder(s): artifact 700, troop 998"
    assert set(before) - set(catalog_rows(pg_dsn)) == {("artifact", 700), ("troop", 998)}
    doc = json.loads(cli("catalog", "cleanup", "--json").stdout)
    assert doc["deleted"] == [] and [(p["kind"], p["id"]) for p in doc["in_use"]] == [
        ("pet", MISSING_PET),
        ("troop", MISSING_TROOP),
    ]


def test_json_shapes_match_the_doc(cli: Any, tmp_path: Path) -> None:
    docs = documented()
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"kind": "troop", "id": MISSING_TROOP, "name": "Storm Giant"}) + "\n")
    for heading, args in (
        ("catalog placeholders", ("catalog", "placeholders")),
        ("catalog import", ("catalog", "import", str(path))),
        ("catalog cleanup", ("catalog", "cleanup", "--dry-run")),
        ("catalog cleanup", ("catalog", "cleanup")),
    ):
        res = cli(*args, "--json")
        assert res.exit_code == 0, res.output
        assert set(json.loads(res.stdout)) == docs[heading], heading
