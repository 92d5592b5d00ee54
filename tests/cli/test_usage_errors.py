"""Usage errors read like every other error: one `error:` line, one `hint:`, exit 2, no click banner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from starforge_backfill.cli import main


def _run(*args: str) -> tuple[int, list[str]]:
    res = CliRunner().invoke(main, list(args), env={"STARFORGE_DATABASE_URL": ""})
    return res.exit_code, res.stderr.strip().splitlines()


def test_a_misspelt_command_says_which_one_it_looks_like() -> None:
    code, lines = _run("verfy")
    assert code == 2
    assert lines == ["error: no such command 'verfy' (did you mean verify?)", "hint: see `main --help`"]


@pytest.mark.parametrize("option", ["--metrics-file", "--dsn", "--config", "--operator"])
def test_a_global_option_after_a_command_group_says_where_it_goes(option: str) -> None:
    code, lines = _run("db", option, "x.prom", "init")
    assert code == 2
    assert lines[0].startswith(f"error: No such option '{option}'.")
    assert lines[1].startswith(f"hint: {option} is a global option: put it before the subcommand")


def test_global_options_after_the_subcommand_work_as_before_it(tmp_path: Path) -> None:
    # --dsn after the subcommand is the DSN used (an unreachable one: exit 3 naming it)
    code, lines = _run("status", "--dsn", "postgresql://nobody@127.0.0.1:1/nowhere")
    assert code == 3 and "127.0.0.1:1/nowhere" in lines[0], lines
    # -c after the subcommand is the config read (a bad one: exit 2 naming the file and key)
    bad = tmp_path / "bad.yaml"
    bad.write_text("job:\n  chunk_sise: 5\n")
    code, lines = _run("sql", "show", "etl/merge.sql", "-c", str(bad))
    assert code == 2 and str(bad) in lines[0] and "chunk_sise" in lines[0], lines
    # the later of two wins; a bad value is still refused
    code, lines = _run(
        "--dsn", "postgresql://a@127.0.0.1:1/first", "status", "--dsn", "postgresql://a@127.0.0.1:1/second"
    )
    assert code == 3 and "/second" in lines[0], lines
    code, lines = _run("status", "--metrics-file", "x.txt")
    assert code == 2 and lines[0].startswith("error: Invalid value for '--metrics-file'"), lines


def test_a_bad_value_is_one_error_line_and_the_commands_help_as_hint() -> None:
    code, lines = _run("run", "--batch-size", "0")
    assert code == 2
    assert lines == [
        "error: Invalid value for '--batch-size': 0 is not in the range 1<=N<=10000",
        "hint: see `main run --help`",
    ]
    assert _run("run", "--batch-size", "auto", "--help")[0] == 0
