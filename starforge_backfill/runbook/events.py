"""`events tail`: hand the ETL's events (etl_events) to a consumer, oldest first, from a cursor.

Where it starts: `--after ID`; else a named consumer's stored cursor (a new consumer starts at the first
event still kept); else the newest `--limit` events (10 with `--follow`), like `tail -n`. A named consumer's
cursor is stored after each page has been handed on, so a consumer that stops (Ctrl-C, a crash) resumes
after the last page it took: delivery is at least once, never with a gap. `--follow` polls every `poll_s`
and, with `events.notify: true`, LISTENs so a committed batch wakes it at once (LISTEN needs a session
connection: not through PgBouncer in transaction mode). Plain Python: the CLI renders each event.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from starforge_backfill import outbox, schema
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import UsageError

PAGE = 500
DEFAULT_LIMIT = 100
FOLLOW_BACKLOG = 10


@dataclasses.dataclass(frozen=True)
class TailOptions:
    """What `events tail` reads."""

    after: int | None = None
    consumer: str | None = None
    follow: bool = False
    job_id: str | None = None
    event: str | None = None
    limit: int | None = None  # the most events handed on; default DEFAULT_LIMIT, unlimited with follow
    poll_s: float = 1.0

    def validate(self) -> None:
        """UsageError on values the command cannot act on."""
        if self.after is not None and self.after < 0:
            raise UsageError(f"--after {self.after}: must be >= 0")
        if self.consumer is not None and not self.consumer.strip():
            raise UsageError("--consumer: must not be empty")
        if self.event is not None and self.event not in outbox.EVENTS:
            raise UsageError(f"--event {self.event!r}: must be one of {', '.join(outbox.EVENTS)}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit {self.limit}: must be >= 1")
        if self.poll_s <= 0:
            raise UsageError(f"--poll {self.poll_s:g}: must be > 0")


@dataclasses.dataclass
class TailResult:
    """Where a tail stopped."""

    cursor: int
    handed: int = 0
    started_at: int = 0
    consumer: str | None = None
    listening: bool = False

    def to_json(self) -> dict[str, Any]:
        """The summary (human mode only: `--json` output is the events themselves, one per line)."""
        return dataclasses.asdict(self)


def tail(
    cfg: Config,
    options: TailOptions,
    handle: Callable[[outbox.Event], None],
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[TailResult], None] | None = None,
) -> TailResult:
    """Hand events to `handle`, oldest first, until `options.limit` events, the end (without follow) or
    `stop`; a named consumer's cursor is saved after every page."""
    options.validate()
    stop = stop or threading.Event()
    limit = options.limit if options.limit is not None else (None if options.follow else DEFAULT_LIMIT)
    filters = {"job_id": options.job_id, "event": options.event}
    app = f"{cfg.database.application_name}:events"
    with connect_cfg(cfg, autocommit=True, application_name=app) as conn, translate_errors(cfg.database.dsn):
        schema.check_schema(conn)
        if options.after is not None:
            cursor = options.after
        elif options.consumer is not None:
            cursor = outbox.load_cursor(conn, options.consumer) or 0
        else:
            backlog = limit if limit is not None else FOLLOW_BACKLOG
            cursor = outbox.newest_cursor(conn, min(backlog, 10_000), **filters)
        res = TailResult(cursor=cursor, started_at=cursor, consumer=options.consumer)
        if options.follow and cfg.events.notify:
            outbox.listen(conn)
            res.listening = True
        if on_start is not None:
            on_start(res)
        while not stop.is_set():
            want = PAGE if limit is None else min(PAGE, limit - res.handed)
            page = outbox.read(conn, res.cursor, limit=want, **filters)
            for event in page:
                handle(event)
            if page:
                res.cursor = page[-1].id
                res.handed += len(page)
                if options.consumer is not None:
                    outbox.save_cursor(conn, options.consumer, res.cursor)
            if limit is not None and res.handed >= limit:
                break
            if len(page) == want:
                continue  # more backlog: read on without waiting
            if not options.follow:
                break
            if res.listening:
                outbox.wait(conn, options.poll_s)
            else:
                stop.wait(options.poll_s)
    return res
