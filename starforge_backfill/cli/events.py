"""`events tail`: read the ETL's snapshot events (etl_events) from a cursor; `--follow` waits for more."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled
from starforge_backfill.errors import ExitCode


@click.group("events")
def group() -> None:
    """The ETL's event outbox: one snapshot_processed or snapshot_failed event per snapshot outcome."""


@group.command("tail")
@click.option("--after", "after", type=int, help="Start after this event id (overrides a consumer's cursor).")
@click.option("--consumer", help="A named consumer: start after its stored cursor and store where it stopped.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events (Ctrl-C exits 130, SIGTERM 0).")
@click.option("--job-id", help="Only this job's events ('realtime' for process_snapshot queue jobs).")
@click.option("--event", type=click.Choice(["snapshot_processed", "snapshot_failed"]), help="Only this kind.")
@click.option("--limit", type=click.IntRange(1, None), help="At most N events [default: 100; none with --follow].")
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(0, None, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.pass_obj
@handled
def tail_command(
    obj: Ctx,
    after: int | None,
    consumer: str | None,
    follow: bool,
    job_id: str | None,
    event: str | None,
    limit: int | None,
    poll_s: float,
) -> None:
    """Events oldest first after a cursor; without one, the newest --limit (10 with --follow).

    --json prints one JSON object per line (docs/JSON.md). A --consumer's cursor is stored after each page,
    so it resumes where it stopped."""
    from starforge_backfill.runbook.events import TailOptions, TailResult, tail

    options = TailOptions(
        after=after, consumer=consumer, follow=follow, job_id=job_id, event=event, limit=limit, poll_s=poll_s
    )
    obj.emitted = True  # the output is the events themselves: no JSON document at the end
    state: dict[str, Any] = {}

    def started(res: TailResult) -> None:
        state["res"] = res
        if follow:
            how = "LISTEN + poll" if res.listening else f"polling every {poll_s:g}s"
            obj.say(f"following etl_events after id {res.cursor} ({how}); Ctrl-C to stop")

    def handle(ev: Any) -> None:
        click.echo(json.dumps(ev.to_json(), default=str) if obj.json else _line(ev))
        sys.stdout.flush()

    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())  # a service stop: end cleanly, exit 0
    try:
        res = tail(obj.config(), options, handle, stop=stop, on_start=started)
    except KeyboardInterrupt:
        at = state.get("res")
        where = f"; consumer {consumer!r} resumes after id {at.cursor}" if at is not None and consumer else ""
        obj.say(f"interrupted{where}")
        sys.exit(int(ExitCode.INTERRUPTED))
    finally:
        signal.signal(signal.SIGTERM, previous)
    stored = (
        f" (stored for {consumer!r})"
        if consumer and res.handed
        else (f" ({consumer!r}: nothing new)" if consumer else "")
    )
    obj.say(f"{res.handed} event(s); cursor {res.cursor}{stored}")


def _line(ev: Any) -> str:
    """One event as a human line."""
    when = ev.created_at.strftime("%Y-%m-%d %H:%M:%S")
    what = ev.outcome if ev.error_type is None else f"{ev.outcome} {ev.error_type}"
    return (
        f"{ev.id:>8}  {when}  {ev.event:<18}  {ev.snapshot_id}  {ev.namecode or '-':<14}  "
        f"job {ev.job_id or '-'}  {what}  rows {ev.rows_written}  {ev.duration_ms:.1f} ms"
    )
