"""`reprocess`: targeted re-runs of chosen snapshots through the same engine as `run`.

The selection (snapshot ids, namecodes, error types, the failures of a job, narrowed by a range) is resolved
once, when the job is created, to an explicit list of snapshot ids stored in the job's selector
(`Selector(reprocess=True, ids=...)`), and the job's range is the given `--from/--to`, else the span of the
chosen snapshots. From there it is an ordinary job of mode `reprocess`: chunks, checkpoints, gates (like
`run`), throttle, `--force --reason`, and a resumed job works on exactly the set it was created with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from starforge_backfill import jobs, templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import EtlError, ExitCode, UsageError
from starforge_backfill.runbook.run import Notify, RunOptions, RunProgress, RunResult, run
from starforge_backfill.schema import check_schema
from starforge_backfill.timerange import parse_ts

MODE = "reprocess"
ERROR_TYPES = (EtlError.PARSE_ERROR, EtlError.VALIDATION_ERROR, EtlError.FK_VIOLATION, EtlError.DB_ERROR)
ONE_MICROSECOND = dt.timedelta(microseconds=1)


def _quiet(_msg: str) -> None:
    return None


def _entries(lines: Iterable[str], source: str) -> Iterable[tuple[int, str]]:
    """(line number, text) of the lines that carry a value: blank lines and `#` comments are skipped."""
    for n, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            yield n, text


def _bad_line(source: str, n: int, text: str, what: str) -> UsageError:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return UsageError(f"{source}:{n}: not {what}: {shown!r}")


def parse_snapshot_ids(lines: Iterable[str], source: str) -> list[tuple[int, uuid.UUID]]:
    """(line number, id) from a `--snapshot-ids` file: one uuid a line. A bad line: UsageError naming it."""
    out = []
    for n, text in _entries(lines, source):
        try:
            out.append((n, uuid.UUID(text)))
        except ValueError:
            raise _bad_line(source, n, text, "a snapshot id (uuid)") from None
    return out


def parse_namecodes(lines: Iterable[str], source: str) -> list[str]:
    """The namecodes of a `--namecodes` file: one a line, no whitespace inside. A bad line: UsageError."""
    out = []
    for n, text in _entries(lines, source):
        if any(ch.isspace() for ch in text):
            raise _bad_line(source, n, text, "a namecode (one per line, no spaces)")
        out.append(text)
    return out


@dataclasses.dataclass(frozen=True)
class Selection:
    """What an operator asked to reprocess: the union of every source given, narrowed by from/to."""

    ids: tuple[tuple[int, uuid.UUID], ...] = ()  # (line number, id) from --snapshot-ids
    ids_source: str = "--snapshot-ids"
    namecodes: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    failed_of: str | None = None
    from_ts: dt.datetime | None = None
    to_ts: dt.datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        ids: Iterable[tuple[int, uuid.UUID]] = (),
        ids_source: str = "--snapshot-ids",
        namecodes: Iterable[str] = (),
        error_types: Iterable[str] = (),
        failed_of: str | None = None,
        from_ts: str | dt.datetime | None = None,
        to_ts: str | dt.datetime | None = None,
    ) -> Selection:
        """A selection from operator input; refuses one with no source, an unknown error type or a bad range."""
        types = tuple(dict.fromkeys(t.upper() for t in error_types))
        for t in types:
            if t not in ERROR_TYPES:
                raise UsageError(f"--error-type {t}: unknown (one of {', '.join(ERROR_TYPES)})")
        f = parse_ts(from_ts, "--from") if from_ts is not None else None
        t_ = parse_ts(to_ts, "--to") if to_ts is not None else None
        if f is not None and t_ is not None and f >= t_:
            raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t_.isoformat()})")
        sel = cls(tuple(ids), ids_source, tuple(namecodes), types, failed_of, f, t_)
        if not sel.given:
            raise UsageError(
                "say what to reprocess: --snapshot-ids FILE, --error-type TYPE, --namecodes FILE or --failed-of JOB",
                hint="or --job-id JOB to resume a reprocess job",
            )
        return sel

    @property
    def given(self) -> bool:
        """True when at least one source of snapshots was given."""
        return bool(self.ids or self.namecodes or self.error_types or self.failed_of)

    def to_json(self) -> dict[str, Any]:
        """What was asked (recorded in the result)."""
        return {
            "snapshot_ids": len(self.ids),
            "namecodes": list(self.namecodes),
            "error_types": list(self.error_types),
            "failed_of": self.failed_of,
            "from_ts": self.from_ts,
            "to_ts": self.to_ts,
        }


def resolve(conn: Any, selection: Selection) -> jobs.Selector | None:
    """The job's selector: the chosen snapshots as an explicit id list over their range (None: none chosen).

    Refused (UsageError, nothing written) when an id of the file names no snapshot, or --failed-of names no job."""
    explicit = [i for _, i in selection.ids]
    if explicit:
        known = {r["id"] for r in templates.fetch_all(conn, "reprocess/known_ids.sql", {"ids": explicit})}
        for n, i in selection.ids:
            if i not in known:
                raise UsageError(f"{selection.ids_source}:{n}: no snapshot {i} in hero_snapshots")
    if selection.failed_of is not None and jobs.get_job(conn, selection.failed_of) is None:
        raise UsageError(f"--failed-of: no job {selection.failed_of!r}", hint="`starforge-backfill status` lists them")
    rows = templates.fetch_all(
        conn,
        "reprocess/select.sql",
        {
            "ids": explicit or None,
            "namecodes": list(selection.namecodes) or None,
            "error_types": list(selection.error_types) or None,
            "failed_of": selection.failed_of,
            "from_ts": selection.from_ts,
            "to_ts": selection.to_ts,
        },
    )
    if not rows:
        return None
    from_ts = selection.from_ts or rows[0]["created_at"]
    to_ts = selection.to_ts or rows[-1]["created_at"] + ONE_MICROSECOND  # half-open: the newest is inside
    return jobs.Selector(from_ts=from_ts, to_ts=to_ts, reprocess=True, ids=tuple(r["id"] for r in rows))


@dataclasses.dataclass
class ReprocessResult:
    """The end of a `reprocess`: the run of its job, or nothing when no snapshot was chosen."""

    selection: dict[str, Any]
    selected: int
    run: RunResult | None

    @property
    def exit_code(self) -> ExitCode:
        """The run's exit code (0 when nothing was chosen: there is nothing to do)."""
        return self.run.exit_code if self.run is not None else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """`reprocess --json`: `run --json`'s shape plus `reprocess` (what was asked and how many it chose)."""
        head = self.run.to_json() if self.run is not None else {}
        return head | {"reprocess": {"selection": self.selection, "selected": self.selected}}


def reprocess(
    cfg: Config,
    selection: Selection | None = None,
    *,
    job_id: str | None = None,
    options: RunOptions | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    notify: Notify = _quiet,
    stop: threading.Event | None = None,
) -> ReprocessResult:
    """Reprocess `selection`'s snapshots as a new job of mode `reprocess`, or resume reprocess job `job_id`."""
    opts = dataclasses.replace(options or RunOptions(), mode=MODE)
    opts.validate()
    if job_id is not None:
        with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
            check_schema(conn)
            row = jobs.get_job(conn, job_id)
        if row is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
        if row["mode"] != MODE:
            raise UsageError(f"job {job_id} is a {row['mode']} job, not a reprocess job", hint="resume it with `run`")
        res = run(cfg, None, job_id=job_id, options=opts, progress=progress, notify=notify, stop=stop)
        selected = int(res.job.get("total_count") or 0)
        return ReprocessResult({"job_id": job_id}, selected, res)
    if selection is None:
        raise UsageError("say what to reprocess, or --job-id JOB to resume a reprocess job")
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        selector = resolve(conn, selection)
    if selector is None:
        notify("nothing to reprocess: no snapshot matches the selection")
        return ReprocessResult(selection.to_json(), 0, None)
    assert selector.ids is not None
    notify(
        f"reprocess: {len(selector.ids)} snapshot(s) chosen in "
        f"[{selector.from_ts.isoformat()}, {selector.to_ts.isoformat()})"
    )
    res = run(cfg, selector, options=opts, progress=progress, notify=notify, stop=stop)
    return ReprocessResult(selection.to_json(), len(selector.ids), res)
