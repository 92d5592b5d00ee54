"""Read-only views of the SQL templates for operators: `sql list`, `sql show`, `run --print-sql`.

Templates are rendered exactly as the toolkit renders them (values stay `%(name)s` placeholders, bound by
psycopg at run time). `pretty()` reformats a rendered statement with sqlglot *for reading only*: what
sqlglot prints is never executed. Nothing here connects to a database.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from starforge_backfill.errors import UsageError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Statement:
    """One rendered template and why a run executes it."""

    name: str
    sql: str
    when: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON shape: {"name", "when", "sql"}."""
        return {"name": self.name, "when": self.when, "sql": self.sql}


def template_names() -> list[str]:
    """Every template name (e.g. `etl/merge.sql`)."""
    from starforge_backfill import templates

    return templates.template_names()


def parse_vars(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`key=value` pairs into a template context: ints, true/false, else strings (usable in tests only)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise UsageError(f"--var {pair!r}: expected KEY=VALUE with KEY a template variable name")
        low = value.strip().lower()
        if re.fullmatch(r"-?[0-9]+", value.strip()):
            out[key] = int(value)
        elif low in ("true", "false"):
            out[key] = low == "true"
        elif low in ("none", "null"):
            out[key] = None
        else:
            out[key] = value
    return out


def base_context(cfg: Any) -> dict[str, Any]:
    """The structure-only context the toolkit renders with, from the config."""
    return {"catalog_policy": cfg.etl.catalog_policy, "source": "table", "upsert_entities": False, "entity": "troop"}


def render(cfg: Any, name: str, variables: dict[str, Any] | None = None) -> str:
    """Render template `name` with the config's context overridden by `variables`."""
    import jinja2

    from starforge_backfill import templates

    if name not in templates.template_names():
        close = [n for n in templates.template_names() if name.split("/")[-1] in n][:5]
        raise UsageError(
            f"no SQL template {name!r}",
            hint=("did you mean " + ", ".join(close) + "? " if close else "") + "`starforge-backfill sql list`",
        )
    context = base_context(cfg) | (variables or {})
    try:
        return templates.render(name, **context)
    except jinja2.UndefinedError as exc:
        raise UsageError(f"{name}: {exc}", hint="pass the missing value with --var KEY=VALUE") from None
    except TypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _comments_on_their_own_lines(text: str) -> str:
    """`code  -- comment` as `-- comment` then `code`: sqlglot keeps a comment that leads a token, but drops the
    first line of one trailing code (`newest AS (  -- each user's ...` lost its first line). Quotes respected."""
    out = []
    for line in text.splitlines():
        at = _comment_start(line)
        if at > 0 and line[:at].strip():
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{line[at:].rstrip()}")
            out.append(line[:at].rstrip())
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _comment_start(line: str) -> int:
    """Where a `--` comment starts in `line` outside quotes and identifiers; -1 when it has none."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif line.startswith("--", i):
            return i
    return -1


def _parse(text: str) -> list[Any]:
    """sqlglot's trees of `text` (PostgreSQL), its "falling back to Command" warnings silenced: the callers
    look for `exp.Command` themselves."""
    import sqlglot

    sqlglot_log = logging.getLogger("sqlglot")
    previous = sqlglot_log.level
    sqlglot_log.setLevel(logging.ERROR)
    try:
        return sqlglot.parse(text, read="postgres")
    finally:
        sqlglot_log.setLevel(previous)


def pretty(text: str) -> tuple[str, bool]:
    """(text reformatted by sqlglot, True) for reading; (text, False) when sqlglot cannot parse it fully."""
    import sqlglot
    from sqlglot import exp

    try:
        trees = _parse(_comments_on_their_own_lines(text))
    except sqlglot.errors.SqlglotError:
        return text, False
    if not trees or any(t is None or isinstance(t, exp.Command) for t in trees):
        return text, False
    formatted = ";\n\n".join(t.sql(dialect="postgres", pretty=True) for t in trees if t is not None) + ";\n"
    flat = " ".join(formatted.split())
    for line in text.splitlines():  # a comment sqlglot dropped (e.g. one before OFFSET): show the text as it is
        at = _comment_start(line)
        if at >= 0 and " ".join(line[at + 2 :].split()) not in flat:
            return text, False
    return formatted, True


def read_only_problem(text: str) -> str | None:
    """Why `text` is not one read-only query (the guard's `throttle.probe_sql`), or None when it is: one
    SELECT, VALUES, TABLE or WITH ... SELECT that writes nothing (no data-modifying CTE, no SELECT INTO) and
    locks no rows (no FOR UPDATE/SHARE). A mistake caught at config time; what makes the probe read-only at
    run time is the READ ONLY transaction it runs in (a function it calls may still try to write: it fails)."""
    import sqlglot
    from sqlglot import exp

    try:
        trees = [t for t in _parse(text) if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        return f"is not a query sqlglot can read ({str(exc).splitlines()[0][:120]})"
    if len(trees) != 1:
        return f"must be one statement, got {len(trees)}"
    tree = trees[0]
    if not isinstance(tree, exp.Query | exp.Values):
        return "must be a query (SELECT, VALUES, TABLE or WITH ... SELECT): the guard times it every second"
    for node, what in ((exp.Insert, "INSERT"), (exp.Update, "UPDATE"), (exp.Delete, "DELETE"), (exp.Merge, "MERGE")):
        if tree.find(node) is not None:
            return f"must be read-only: it runs {what} (a data-modifying WITH)"
    if tree.find(exp.Into) is not None:
        return "must be read-only: SELECT ... INTO creates a table"
    if tree.find(exp.Lock) is not None:
        return "must not lock rows (FOR UPDATE/SHARE): the probe would queue behind production"
    return None


def run_statements(cfg: Any, *, forced: bool = False) -> list[Statement]:
    """The templates a `run` executes, in order, rendered with this config (placeholders left unbound)."""
    from starforge_backfill import templates

    ctx = base_context(cfg)
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("jobs/find_resumable.sql", {}, "control connection: look for an unfinished job of the same range"),
    ]
    if not forced and (cfg.gates.require_preflight or cfg.gates.require_canary):
        steps.append(("gates/latest.sql", {}, "control connection: the preflight/canary gates (without --force)"))
    steps += [
        ("jobs/create_job.sql", {}, "control connection: a new job row"),
        ("jobs/create_chunks.sql", {}, "control connection: split the range into chunks"),
        ("jobs/get_job.sql", {}, "each worker: read the job"),
        ("jobs/record_event.sql", {}, "each worker, as it starts and ends: a worker_start/worker_end event"),
        ("jobs/job_status.sql", {}, "each worker, before each chunk: still running?"),
        ("jobs/claim_chunk.sql", {}, "each worker: claim a chunk (FOR UPDATE SKIP LOCKED)"),
    ]
    if cfg.throttle.enabled:
        steps.append(("jobs/health.sql", {}, "each worker, before a batch (at most every second): health gates"))
        guard = "the production guard, own connection"
        steps += [
            ("guard/signals.sql", {}, f"{guard} (at most every check_every): other sessions, vacuum, WAL, lag"),
            ("guard/has_pgss.sql", {}, f"{guard}, once: is pg_stat_statements there?"),
            ("guard/other_statements.sql", {}, f"{guard}, with pg_stat_statements: other roles' statement times"),
            ("guard/record_reading.sql", {}, f"{guard}: a reading, every sample_every and on a change"),
            ("guard/blockers.sql", {}, f"{guard}'s watcher (every block_check): our batches blocking production"),
            ("guard/cancel.sql", {}, f"{guard}'s watcher: cut a blocking batch short (it is retried smaller)"),
        ]
    steps.append(("jobs/next_batch.sql", {}, "each worker: the next batch of snapshot ids after the checkpoint"))
    batch = "each batch, in one transaction"
    steps.append(("etl/stage_tables.sql", {}, f"{batch}: per-connection staging tables"))
    if cfg.etl.fast_path:
        steps += [
            (
                "etl/stage.sql",
                {"source": "table", "elements": "recordset"},
                f"{batch}: parse the batch server-side into staging (one jsonb_populate_recordset per section)",
            ),
            (
                "etl/stage.sql",
                {"source": "table", "elements": "each"},
                f"{batch}, when a section holds a non-object element: the same, element by element",
            ),
            ("etl/screen.sql", {}, f"{batch}: remove sensitive keys from the staged rows"),
            ("etl/flag.sql", {}, f"{batch}: flag snapshots the set-based path cannot apply exactly"),
            ("etl/unstage.sql", {}, f"{batch}: drop flagged snapshots from staging"),
        ]
    steps.append(("etl/fetch_raw.sql", {}, f"{batch}, per flagged snapshot: the payload for the Python reference"))
    if cfg.etl.catalog_policy == "fail":
        steps.append(("etl/missing_catalog_ids.sql", {}, f"{batch}, per flagged snapshot: catalog ids (policy fail)"))
    steps += [
        ("etl/record_error.sql", {}, f"{batch}, per failed snapshot: etl_errors row and bookkeeping"),
        (
            "etl/stage.sql",
            {"source": "params", "elements": "each"},
            f"{batch}: stage the reference path's canonical payloads",
        ),
        ("etl/users.sql", {}, f"{batch}: upsert users"),
        ("etl/usernames.sql", {}, f"{batch}: username history"),
    ]
    if cfg.etl.catalog_policy == "placeholder":
        steps.append(("etl/placeholders.sql", {}, f"{batch}: placeholder catalog rows for unknown ids"))
    steps += [
        *(
            ("etl/merge_entity.sql", {"entity": e}, f"{batch}: merge the staged {e}s (MERGE, in a savepoint)")
            for e in ("troop", "pet", "artifact")
        ),
        ("etl/merge.sql", {"upsert_entities": False}, f"{batch}: merge summaries; mark snapshots processed"),
        (
            "etl/merge.sql",
            {"upsert_entities": True},
            f"{batch}, only when another worker inserted the same rows meanwhile: the same writes as upserts",
        ),
        ("etl/sync_usernames.sql", {}, f"{batch}: current usernames"),
    ]
    if cfg.events.enabled:
        steps += [
            ("etl/events_lock.sql", {}, f"{batch}: the events lock, held to the commit (event ids in commit order)"),
            (
                "etl/events.sql",
                {"staged": True, "notify": cfg.events.notify},
                f"{batch}: one etl_events row per applied or failed snapshot",
            ),
        ]
    steps += [
        ("jobs/checkpoint.sql", {}, f"{batch}: the chunk's checkpoint and counters"),
        ("jobs/finish_chunk.sql", {}, "each worker: a chunk is done"),
        ("jobs/finish_job.sql", {}, "the last worker: the job is done"),
        ("events/prune.sql", {}, "control connection, at most once a minute: delete expired events in small batches"),
    ]
    if cfg.quarantine.s3_url:  # outside every ETL transaction (quarantine_s3.py)
        steps += [
            ("quarantine/copies.sql", {}, "control connection, with quarantine.s3_url: copies left local before"),
            (
                "quarantine/record_copy.sql",
                {},
                "the quarantine uploader's own connection, after a batch with failures committed: per copy, its "
                "S3 URL or why it stays local",
            ),
        ]
    names = set(templates.template_names())
    out = []
    for name, extra, when in steps:
        if name not in names:  # this list is kept by hand: a renamed template must not vanish from the view
            raise RuntimeError(f"sqlview.run_statements lists {name}, which is not a template under sql/")
        label = name + "".join(f"[{k}={str(v).lower()}]" for k, v in extra.items())
        out.append(Statement(label, templates.render(name, **(ctx | extra)), when))
    return out
