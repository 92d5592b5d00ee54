"""Human output: rich tables and progress bars on a terminal, plain lines in CI logs."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

PLAIN_EVERY_S = 30.0
ENV_PROGRESS_EVERY = "STARFORGE_PROGRESS_EVERY"

log = logging.getLogger("starforge_backfill.progress")


def plain_every_s() -> float:
    """Seconds between plain progress lines: $STARFORGE_PROGRESS_EVERY, else 30."""
    try:
        return max(0.0, float(os.environ.get(ENV_PROGRESS_EVERY, PLAIN_EVERY_S)))
    except ValueError:
        return PLAIN_EVERY_S


class ProgressReporter:
    """Progress of a run: a rich bar with rate and ETA on a terminal; otherwise a plain line at the first batch,
    then about every 30 s ($STARFORGE_PROGRESS_EVERY), and a last one at the end. Nothing when disabled (--quiet).

    Plain lines go through logging (logger `starforge_backfill.progress`), so `--log-format json` turns them
    into JSON objects with done, total, failed, rate_per_s and eta_s.
    """

    def __init__(self, enabled: bool = True, every_s: float | None = None, *, bar: bool = True) -> None:
        self.enabled = enabled
        self.every_s = plain_every_s() if every_s is None else every_s
        self.console: Any = None
        self.interactive = False
        # rich only when a bar could show (its import is a tenth of a short run's startup)
        if (
            enabled
            and bar
            and (sys.stderr.isatty() or os.environ.get("FORCE_COLOR") or os.environ.get("TTY_INTERACTIVE"))
        ):
            from rich.console import Console

            self.console = Console(stderr=True)
            self.interactive = self.console.is_interactive
        self._last = -float("inf")
        self._last_done: int | None = None
        self._state: Any = None
        self._progress: Any = None
        self._task: Any = None

    def update(self, state: Any) -> None:
        """Called after every batch with the run's RunProgress."""
        if not self.enabled:
            return
        self._state = state
        if self.interactive:
            self._bar(state)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(state)

    def _line(self, state: Any) -> None:
        total = int(state.total or 0)
        done = int(state.done)
        rate = float(state.rate)
        remaining = max(total - done, 0)
        eta = round(remaining / rate) if rate > 0 and total else None
        pct = f"{100 * done / total:.1f}%" if total else "?"
        message = (
            f"progress job={state.job_id} done={done}/{total or '?'} ({pct}) failed={state.errors}"
            f" rate={rate:.1f}/s eta={'?' if eta is None else f'{eta}s'}"
        )
        self._last_done = done
        from starforge_backfill.logs import current_handler

        if current_handler() is None:  # used outside the CLI: no logging set up
            print(message, file=sys.stderr, flush=True)
            return
        log.info(
            message,
            extra={
                "event": "progress",
                "job_id": state.job_id,
                "done": done,
                "total": total,
                "failed": state.errors,
                "rate_per_s": round(rate, 2),
                "eta_s": eta,
            },
        )

    def _bar(self, state: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f}/s, {task.fields[failed]} failed"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(state.job_id, total=state.total or None, rate=0.0, failed=0)
        self._progress.update(self._task, completed=state.done, rate=state.rate, failed=state.errors)

    def close(self) -> None:
        """Stop the bar, if any; in plain mode, print the last state unless it was just printed."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        elif self.enabled and self._state is not None and self._last_done != int(self._state.done):
            self._line(self._state)


STATUS_COLUMNS = ("job", "mode", "state", "progress", "processed", "errors", "rate/s", "eta", "workers", "note")


def status_cells(r: dict[str, Any]) -> list[str]:
    """One job's cells, in STATUS_COLUMNS order."""
    return [
        r["job_id"],
        r.get("mode", ""),
        r.get("state") or r["status"],
        f"{100 * r.get('progress', 0):.1f}%",
        str(r["processed_count"]),
        str(r["error_count"]),
        "" if r.get("rate_per_s") is None else f"{r['rate_per_s']:.1f}",
        "" if r.get("eta_s") is None else f"{r['eta_s']}s",
        str(r.get("live_workers", 0)),
        r.get("status_reason") or r.get("throttle_state") or _guard_note(r.get("guard")),
    ]


def _guard_note(guard: dict[str, Any] | None) -> str:
    """The production guard's state when it acts (slow, hold); nothing when healthy or off (see --json)."""
    if not guard:
        return ""
    last = guard.get("last_reading") or {}
    return f"guard {last.get('reason')}" if guard.get("state") in ("slow", "hold") else ""


def render_status(rows: list[dict[str, Any]]) -> None:
    """Print jobs: a rich table on a terminal; plain, whole columns (ids never cut) into a pipe or a file."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cells = [status_cells(r) for r in rows]
    if not console.is_terminal:
        widths = [max(len(c) for c in col) for col in zip(STATUS_COLUMNS, *cells, strict=False)]
        for line in (list(STATUS_COLUMNS), *cells):
            print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)).rstrip())
        return
    table = Table(title="backfill jobs")
    for col in STATUS_COLUMNS:
        table.add_column(col, no_wrap=col == "job", overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table)
