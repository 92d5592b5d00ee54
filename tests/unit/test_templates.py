"""Every SQL template renders and parses as PostgreSQL; the jinja environment only interpolates vetted values."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import sqlglot
from psycopg import sql
from sqlglot import exp

from starforge_backfill import templates
from starforge_backfill.etl.contract import SENSITIVE_PARTS

EXAMPLES = templates.render_examples()


# sqlglot parses LOCK as an opaque Command: a LOCK statement passes only when it is exactly this shape.
_LOCK = re.compile(
    r"TABLE (\w+|\"[^\"]+\")(, (\w+|\"[^\"]+\"))* IN (ACCESS SHARE|ROW SHARE|ROW EXCLUSIVE|SHARE UPDATE EXCLUSIVE|SHARE"
    r"|SHARE ROW EXCLUSIVE|EXCLUSIVE|ACCESS EXCLUSIVE) MODE( NOWAIT)?"
)


def _vouched(node: exp.Command) -> bool:
    """A LOCK TABLE statement of the one shape `_LOCK` allows (names, a lock mode, nothing else)."""
    return str(node.this).upper() == "LOCK" and _LOCK.fullmatch(str(node.expression.name).strip()) is not None


def sql_problems(text: str) -> list[str]:
    """Why sqlglot (postgres dialect) cannot vouch for `text`: parse errors, opaque Command nodes (a plain
    LOCK TABLE aside), no statement.

    psycopg placeholders (`%(name)s`, `%s`) parse as sqlglot Placeholder nodes as they are."""
    try:
        statements = sqlglot.parse(text, read="postgres")
    except sqlglot.errors.SqlglotError as exc:
        return [f"parse error: {str(exc).splitlines()[0]}"]
    statements = [s for s in statements if s is not None]
    if not statements:
        return ["no statement"]
    return [
        f"opaque Command: {node.sql(dialect='postgres')[:80]!r}"
        for statement in statements
        for node in statement.find_all(exp.Command)
        if not _vouched(node)
    ]


def test_every_template_is_rendered() -> None:
    rendered = {name.split("[", 1)[0] for name in EXAMPLES}
    assert rendered == set(templates.template_names())
    assert {"etl/flag.sql[placeholder]", "etl/flag.sql[fail]", "etl/stage.sql[table]", "etl/stage.sql[params]"} <= set(
        EXAMPLES
    )
    assert EXAMPLES["etl/flag.sql[placeholder]"] != EXAMPLES["etl/flag.sql[fail]"]
    assert EXAMPLES["etl/stage.sql[table]"] != EXAMPLES["etl/stage.sql[params]"]
    assert "jsonb_populate_recordset(" in EXAMPLES["etl/stage.sql[table]"]
    assert "jsonb_populate_recordset(" not in EXAMPLES["etl/stage.sql[table-each]"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_template_parses_as_postgres(name: str) -> None:
    assert sql_problems(EXAMPLES[name]) == []


# psycopg reads every `%` of a query that takes parameters: `%(name)s`, `%s`, `%b`, `%t` or `%%` (a literal %).
# A bare one, even in a comment ("48% of ..."), fails the statement at run time with "incomplete placeholder".
_BARE_PERCENT = re.compile(r"%(?!\(\w+\)[sbt]|[sbt%])")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_template_has_no_bare_percent_sign(name: str) -> None:
    text = EXAMPLES[name].replace("%%", "")
    assert [text[max(m.start() - 40, 0) : m.end() + 10] for m in _BARE_PERCENT.finditer(text)] == []


def test_the_percent_check_fails_on_a_bare_percent() -> None:
    assert _BARE_PERCENT.search("-- 48% of it\nSELECT %(ids)s") is not None
    assert _BARE_PERCENT.search("SELECT %(ids)s, %s, 'a' LIKE 'b%%'".replace("%%", "")) is None


def test_multi_statement_templates_parse_every_statement() -> None:
    text = EXAMPLES["etl/users.sql"]
    assert len([s for s in sqlglot.parse(text, read="postgres") if s is not None]) == 2
    assert sql_problems(text + "\nVACUUM users;") != []  # a Command after the first statement is still caught


@pytest.mark.parametrize(
    "text",
    [
        "SELEC 1 FROM users",
        "SELECT (1 FROM users",
        "VACUUM ANALYZE users",
        "",
        "-- only a comment\n",
        "LOCK TABLE users IN SHARE MODE junk",
        "LOCK TABLE users IN SHRE MODE",
        "LOCK users",
    ],
    ids=["typo", "unbalanced", "command", "empty", "comment-only", "lock-trailing", "lock-typo", "lock-bare"],
)
def test_the_check_fails_on_bad_sql(text: str) -> None:
    assert sql_problems(text) != []


def test_the_check_vouches_for_a_plain_lock() -> None:
    assert sql_problems("LOCK TABLE troop_catalog, pet_catalog IN SHARE ROW EXCLUSIVE MODE") == []


def test_finalize_refuses_a_caller_supplied_string() -> None:
    env = templates._env()
    tpl = env.from_string("SELECT * FROM users WHERE namecode = {{ namecode }}")
    with pytest.raises(TypeError, match="caller-supplied"):
        tpl.render(namecode=templates._vet("x'; DROP TABLE users; --"))
    # ints, vetted identifiers and template-authored text are interpolated
    ok = env.from_string("SELECT {{ n }} FROM {{ t }} {{ 'LIMIT 1' }}").render(n=3, t=templates.Ident("users"))
    assert ok == 'SELECT 3 FROM "users" LIMIT 1'
    # a caller string may drive structure, never text
    tests = env.from_string("{% if policy == 'fail' %}strict{% else %}lenient{% endif %}")
    assert tests.render(policy=templates._vet("fail")) == "strict"
    with pytest.raises(TypeError):
        env.from_string("SELECT {{ sqlstr(v) }}").render(v=templates._vet("x"))


def test_render_vets_the_context(monkeypatch: pytest.MonkeyPatch) -> None:
    env = templates._env()
    inline = jinja2.DictLoader({"test/inline.sql": "SELECT * FROM t WHERE kind = {{ kind }}"})
    monkeypatch.setattr(env, "loader", jinja2.ChoiceLoader([inline, env.loader]))
    with pytest.raises(TypeError, match="caller-supplied"):
        templates.render("test/inline.sql", kind="troop")
    assert templates.render("test/inline.sql", kind=7) == "SELECT * FROM t WHERE kind = 7"
    with pytest.raises(TypeError):
        templates.render("test/inline.sql", kind=1.5)
    with pytest.raises(TypeError):
        templates.render("test/inline.sql", kind={"a": 1})
    # a missing variable never renders (StrictUndefined reaches finalize, which refuses it)
    with pytest.raises((jinja2.UndefinedError, TypeError)):
        templates.render("test/inline.sql")


@pytest.mark.parametrize(
    ("names", "quoted"),
    [
        (("users",), '"users"'),
        (('we"ird',), '"we""ird"'),
        (('"',), '""""'),
        (("public", 'ta"b"le'), '"public"."ta""b""le"'),
    ],
)
def test_ident_quoting_doubles_quotes(names: tuple[str, ...], quoted: str) -> None:
    ident = templates.Ident(*names)
    assert ident.as_string() == quoted
    assert ident.as_string() == sql.Identifier(*names).as_string(None)
    assert templates._env().from_string("{{ ident(*names) }}").render(names=list(names)) == quoted


def test_the_sql_sensitive_regex_is_python_lower_substring_match() -> None:
    # The regex spells each contract part with explicit classes ([tT][oO]...), case-sensitive, so no database
    # locale changes it; str.lower() also turns the Kelvin sign (U+212A) into "k".
    def letter(c: str) -> str:
        return "[kK\\u212a]" if c == "k" else f"[{c}{c.upper()}]"

    expected = "(" + "|".join("".join(letter(c) for c in part) for part in SENSITIVE_PARTS) + ")"
    pattern = templates._env().get_template("etl/_macros.sql").module.SENSITIVE_RE
    assert pattern == expected
    # only two non-ASCII characters lower into ASCII letters: U+212A into "k"; U+0130 into "i" + U+0307,
    # which cannot complete a part (the one part with an "i", "session", has another letter after it)
    folding = {c for c in range(0x80, 0x110000) if any("a" <= ch <= "z" for ch in chr(c).lower())}
    assert folding == {0x130, 0x212A}
    assert chr(0x130).lower() == "i\u0307" and all("i" not in p[:-1] or "io" in p for p in SENSITIVE_PARTS)
    for key in ("authToken", "x_SESSION_y", "PassWd", "TO\u212aEN", "my_password"):
        assert re.search(pattern, key) and any(p in key.lower() for p in SENSITIVE_PARTS), key
    for key in ("IsNew", "passwage", "Ascension", "TOKE N", "sessi\u0130on"):
        assert not re.search(pattern, key) and not any(p in key.lower() for p in SENSITIVE_PARTS), key


def test_renders_are_cached_per_structural_context() -> None:
    one = templates.render("etl/merge.sql", catalog_policy="placeholder", upsert_entities=True)
    assert templates.render("etl/merge.sql", catalog_policy="placeholder", upsert_entities=True) is one
    other = templates.render("etl/merge.sql", catalog_policy="placeholder", upsert_entities=False)
    assert other != one and 'INSERT INTO "user_troops"' in one and 'INSERT INTO "user_troops"' not in other
    # a bool and an int are equal as dict keys but not the same context
    assert templates.render("etl/merge.sql", catalog_policy="placeholder", upsert_entities=0) == other
    assert templates.Ident("a", "b") == templates.Ident("a", "b") != templates.Ident("a")


def test_compiled_templates_are_kept_on_disk_and_render_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = {"source": "table", "elements": "recordset", "catalog_policy": "placeholder"}
    fresh = templates.make_env(None).get_template("etl/stage.sql").render(**ctx)
    first = templates.make_env(tmp_path / "cache").get_template("etl/stage.sql").render(**ctx)
    assert first == fresh and list((tmp_path / "cache").iterdir())
    # a second process loads the compiled code: it compiles nothing
    second = templates.make_env(tmp_path / "cache")
    monkeypatch.setattr(second, "compile", lambda *a, **k: pytest.fail("compiled again"))
    assert second.get_template("etl/stage.sql").render(**ctx) == fresh


def test_a_cache_that_cannot_be_written_never_fails_a_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert templates.make_env(blocker / "cache").get_template("etl/flag.sql").render(catalog_policy="fail")

    def refuse(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(templates.jinja2.FileSystemBytecodeCache, "dump_bytecode", refuse)
    env = templates.make_env(tmp_path / "full")
    assert env.get_template("etl/flag.sql").render(catalog_policy="fail")
