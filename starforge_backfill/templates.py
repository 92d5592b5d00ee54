"""Load, render and run the SQL templates under `sql/`: jinja2 shapes the statement, psycopg binds every value.

`execute`, `fetch_one` and `fetch_all` are the one way the package runs a template: a change to how statements
are executed (a statement tag, tracing, prepared statements) is made here, once.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

Params = Mapping[str, Any] | None


def sql_dir() -> Path:
    """Where the SQL templates live: inside the installed package, or the repository's `sql/`."""
    packaged = Path(__file__).with_name("sql")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


class Ident:
    """A vetted SQL identifier; the only kind of string the template environment interpolates."""

    __slots__ = ("names",)

    def __init__(self, *names: str) -> None:
        self.names = names

    def as_string(self) -> str:
        """Quote the identifier the way psycopg does, without a connection."""
        return ".".join('"' + n.replace('"', '""') + '"' for n in self.names)

    def __str__(self) -> str:
        return self.as_string()

    def as_composable(self) -> sql.Identifier:
        """The psycopg identifier object."""
        return sql.Identifier(*self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ident) and other.names == self.names

    def __hash__(self) -> int:
        return hash(("Ident", *self.names))


class Choice(str):
    """A caller-supplied string: usable in `{% if %}` tests, never interpolated into SQL text."""

    __slots__ = ()


def _finalize(value: Any) -> Any:
    """Interpolate vetted identifiers, ints and template-authored text; refuse caller strings."""
    if isinstance(value, Ident):
        return value.as_string()
    if isinstance(value, Choice):
        raise TypeError("refusing to interpolate a caller-supplied string into SQL; bind it as a parameter")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return value if isinstance(value, str) else str(value)
    if value is None:
        return ""
    raise TypeError(f"refusing to interpolate {type(value).__name__} into SQL; bind it as a parameter")


def _vet(value: Any) -> Any:
    """Vet one context value: strings become Choice, only SQL-safe types pass."""
    if isinstance(value, Ident | Choice | bool | int) or value is None:
        return value
    if isinstance(value, str):
        return Choice(value)
    if isinstance(value, list | tuple):
        return [_vet(v) for v in value]
    raise TypeError(f"template context cannot hold {type(value).__name__}; bind it as a parameter")


def _sqlstr(text: str) -> str:
    """Quote a template-authored constant as a SQL string literal."""
    if isinstance(text, Choice):
        raise TypeError("refusing to quote a caller-supplied string; bind it as a parameter")
    return "'" + str(text).replace("'", "''") + "'"


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's on-disk cache of compiled templates, which never fails a render: a cache it cannot write
    (read-only home, full disk) only means compiling again next time."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


# The environment's options shape the compiled code, and jinja keys a cached template by its name and source
# only: the options are part of the directory name, so other options never load this code.
_ENV_OPTIONS: dict[str, Any] = {
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
    "autoescape": False,
}


def cache_dir() -> Path:
    """Where compiled templates are kept: $XDG_CACHE_HOME (else ~/.cache)/starforge-backfill/."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    options = hashlib.sha256(repr((jinja2.__version__, sorted(_ENV_OPTIONS.items()))).encode()).hexdigest()[:12]
    return Path(base) / "starforge-backfill" / f"sql-templates-{options}"


def _bytecode_cache(directory: Path) -> jinja2.BytecodeCache | None:
    """Compiling the ~20 templates a run uses costs ~60 ms per process; loading them compiled, ~3 ms. Jinja
    checks each entry against the template's source, so an edited template is compiled again."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _QuietBytecodeCache(str(directory))


@functools.cache
def _env() -> jinja2.Environment:
    return make_env(cache_dir())


def make_env(bytecode_dir: Path | None) -> jinja2.Environment:
    """The template environment (`bytecode_dir` None: compile in memory only)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_dir())),
        bytecode_cache=_bytecode_cache(bytecode_dir) if bytecode_dir is not None else None,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        **_ENV_OPTIONS,
    )
    env.globals["ident"] = lambda *names: Ident(*names)
    env.globals["sqlstr"] = _sqlstr
    return env


def template_names() -> list[str]:
    """Every template under sql/, as names like `etl/merge.sql` (include fragments, `_*.sql`, left out)."""
    return sorted(n for n in _env().list_templates() if n.endswith(".sql") and not n.rsplit("/", 1)[-1].startswith("_"))


def render(name: str, **context: Any) -> str:
    """Render template `name` (e.g. `jobs/claim_chunk.sql`) with structure-only context.

    A template is a pure function of its structural context, so renders are cached: a batch renders about
    twenty statements, a millisecond each."""
    vetted = {k: _vet(v) for k, v in context.items()}
    try:
        key = (name, tuple(sorted((k, type(v).__name__, _frozen(v)) for k, v in vetted.items())))
        hash(key)
    except TypeError:  # an unhashable value: render without the cache
        return _env().get_template(name).render(**vetted)
    return _render_cached(key)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=512)
def _render_cached(key: tuple[str, tuple[tuple[str, str, Any], ...]]) -> str:
    name, items = key
    return _env().get_template(name).render(**{k: _thawed(v) for k, _type, v in items})


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


def execute(conn: psycopg.Connection[Any], name: str, params: Params = None, **context: Any) -> psycopg.Cursor[Any]:
    """Run template `name` (rendered with structural `context`) with bound `params`; the cursor, tuple rows."""
    return conn.execute(render(name, **context).encode(), params)


def fetch_one(conn: psycopg.Connection[Any], name: str, params: Params = None, **context: Any) -> dict[str, Any] | None:
    """Run template `name` and return its first row as a dict (None when it returns no row)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(render(name, **context).encode(), params)
        return cur.fetchone()


def fetch_all(
    conn: psycopg.Connection[Any],
    name: str,
    params: Params = None,
    *,
    json_loads: Callable[[str | bytes], Any] | None = None,
    **context: Any,
) -> list[dict[str, Any]]:
    """Run template `name` and return every row as a dict; `json_loads` decodes its json/jsonb columns."""
    with conn.cursor(row_factory=dict_row) as cur:
        if json_loads is not None:
            set_json_loads(json_loads, cur)
        cur.execute(render(name, **context).encode(), params)
        return cur.fetchall()


def render_examples() -> dict[str, str]:
    """Every template rendered with each structural variant it supports (`tests/unit/test_templates.py` parses
    and checks them all)."""
    out: dict[str, str] = {}
    for name in template_names():
        if name.startswith("schema/"):
            out[name] = render(name)
            continue
        for label, ctx in _VARIANTS.get(name, {"": {}}).items():
            out[name + (f"[{label}]" if label else "")] = render(name, **ctx)
    return out


_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "etl/flag.sql": {
        "placeholder": {"catalog_policy": "placeholder"},
        "fail": {"catalog_policy": "fail"},
    },
    "etl/stage.sql": {
        "table": {"source": "table", "elements": "recordset"},
        "table-each": {"source": "table", "elements": "each"},
        "table-all": {"source": "table", "elements": "recordset", "superseded": False},
        "params": {"source": "params", "elements": "each"},
        "params-all": {"source": "params", "elements": "each", "superseded": False},
    },
    "etl/merge.sql": {
        "upsert": {"upsert_entities": True},
        "summary": {"upsert_entities": False},
    },
    "etl/merge_entity.sql": {e: {"entity": e} for e in ("troop", "pet", "artifact")},
    "census/census.sql": {"exact": {"sampled": False}, "sampled": {"sampled": True}},
    "verify/full_users.sql": {"scope": {"everything": False}, "everything": {"everything": True}},
    "verify/full_totals.sql": {"scope": {"everything": False}, "everything": {"everything": True}},
}


def execute_operator_statement(conn: psycopg.Connection[Any], text: str) -> None:
    """Run one statement the operator wrote in the config (the guard's probe, `throttle.probe_sql`) as written,
    with no binds, and discard its rows. The only SQL that does not come from `sql/`: it is the operator's own
    representative read, timed by the guard, never built from data. The config checked it is one read-only
    query (sqlview.read_only_problem); it runs in a READ ONLY transaction all the same, in the same round trip
    (one simple-protocol message: BEGIN READ ONLY; probe; COMMIT), so nothing it calls can write. The probe
    stands on lines of its own: a trailing `-- comment` must not swallow the COMMIT and leave the guard's
    session idle in a transaction on production. `conn` is in autocommit (the guard's connection); whatever
    block is still open afterwards (an error) is rolled back."""
    body = text.strip().rstrip(";").strip()
    try:
        with conn.cursor() as cur:
            cur.execute(f"BEGIN READ ONLY;\n{body}\n;\nCOMMIT".encode())
            while True:
                if cur.description is not None:
                    cur.fetchall()
                if not cur.nextset():
                    break
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not conn.closed:
            conn.execute("ROLLBACK")
