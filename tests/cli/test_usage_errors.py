"""Usage errors read like every other error: one `error:` line, one `hint:`, exit 2, no click banner."""

from __future__ import annotations

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
def test_a_global_option_after_the_subcommand_says_where_it_goes(option: str) -> None:
    code, lines = _run("preflight", option, "x.prom")
    assert code == 2
    assert lines[0].startswith(f"error: No such option '{option}'.")
    assert lines[1].startswith(f"hint: {option} is a global option: put it before the subcommand")


def test_a_bad_value_is_one_error_line_and_the_commands_help_as_hint() -> None:
    code, lines = _run("run", "--batch-size", "0")
    assert code == 2
    assert lines == [
        "error: Invalid value for '--batch-size': 0 is not in the range 1<=N<=10000",
        "hint: see `main run --help`",
    ]
    assert _run("run", "--batch-size", "auto", "--help")[0] == 0
