"""The README is a contract: every command it shows exists and answers --help, and every command is in it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from starforge_backfill.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
GLOBAL_WITH_VALUE = {"-c", "--config", "--dsn", "--artifacts-dir", "--metrics-file", "--log-format"}


def _shown_commands(text: str) -> list[tuple[str, ...]]:
    """Command paths (e.g. ('db', 'init')) of every `starforge-backfill ...` line in the README's code blocks."""
    paths = []
    for block in re.findall(r"```(?:sh|bash|text)?\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if not line.startswith("starforge-backfill "):
                continue
            tokens = shlex.split(line.split("#", 1)[0].replace("\\", ""))[1:]
            path: list[str] = []
            skip = False
            group: click.Group = main
            for tok in tokens:
                if skip:
                    skip = False
                    continue
                if tok in GLOBAL_WITH_VALUE and not path:
                    skip = True
                    continue
                if tok.startswith("-"):
                    if path:
                        break
                    continue
                sub = group.get_command(click.Context(group), tok)
                if sub is None:
                    path.append(tok)  # unknown: the test below fails on it
                    break
                path.append(tok)
                if not isinstance(sub, click.Group):
                    break
                group = sub
            if path:
                paths.append(tuple(path))
    return sorted(set(paths))


SHOWN = _shown_commands(README)


def test_the_readme_shows_commands() -> None:
    assert len(SHOWN) >= 12, SHOWN


@pytest.mark.parametrize("path", SHOWN, ids=lambda p: " ".join(p))
def test_every_command_in_the_readme_exists_and_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        if isinstance(cmd, click.Group):
            out.extend(_all_commands(cmd, (*prefix, name)))
        else:
            out.append((*prefix, name))
    return out


@pytest.mark.parametrize("path", _all_commands(main), ids=lambda p: " ".join(p))
def test_every_command_has_help_text_and_is_in_the_readme(path: tuple[str, ...]) -> None:
    group: click.Group = main
    cmd: click.Command | None = None
    for name in path:
        cmd = group.get_command(click.Context(group), name)
        if isinstance(cmd, click.Group):
            group = cmd
    assert cmd is not None and (cmd.help or "").strip(), f"{path} has no help text"
    assert f"starforge-backfill {' '.join(path)}" in README or f"`{' '.join(path)}`" in README, (
        f"`{' '.join(path)}` is not shown in README.md"
    )


def test_the_readme_configuration_table_names_every_key_of_the_config_model() -> None:
    import dataclasses

    from starforge_backfill import config as config_module

    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in config_module._sections():
        assert f"| `{name}` |" in section, f"section {name} missing from the README's configuration table"
        for field in dataclasses.fields(getattr(config_module.Config(), name)):
            key = config_module._yaml_name(field)
            assert f"`{key}`" in section, f"{name}.{key} missing from the README's configuration table"
    assert "`artifacts_dir`" in section


RUNBOOK = (ROOT / "runbooks" / "BACKFILL.md").read_text()
NOT_RUNBOOK_STEPS = {"demo", "sql"}  # a newcomer's tour and a SQL viewer, not steps of the runbook


@pytest.mark.parametrize(
    "name", sorted(set(main.list_commands(click.Context(main))) - NOT_RUNBOOK_STEPS), ids=lambda n: n
)
def test_every_runbook_command_is_in_the_runbooks_step_table(name: str) -> None:
    table = [line for line in RUNBOOK.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    assert any(f"`{name}" in line for line in table), f"`{name}` is not in runbooks/BACKFILL.md's step table"


def test_every_starforge_environment_variable_is_documented() -> None:
    """A variable the package or the test suite reads is in README.md or docs/OPERATIONS.md (the test
    server's STARFORGE_TEST_* were only in conftest's docstring)."""
    import re

    sources = [*(ROOT / "starforge_backfill").rglob("*.py"), ROOT / "tests" / "conftest.py"]
    names = {n for p in sources for n in re.findall(r"STARFORGE_[A-Z_]+[A-Z]", p.read_text())}
    assert {"STARFORGE_TEST_DSN", "STARFORGE_TEST_NO_LOCAL", "STARFORGE_DATABASE_URL"} <= names
    docs = README + (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert not sorted(n for n in names if f"`{n}" not in docs and f"${n}" not in docs and f"{n}=" not in docs)
