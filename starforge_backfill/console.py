"""Human output: rich tables and progress bars on a terminal, plain lines in CI logs."""

from __future__ import annotations

import sys
import time
from typing import Any

PLAIN_EVERY_S = 30.0


class ProgressReporter:
    """Progress of a run: a rich bar with rate and ETA on a terminal; a plain line about every 30 s otherwise."""

    def __init__(self, enabled: bool = True, every_s: float = PLAIN_EVERY_S) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled
        self.interactive = enabled and self.console.is_interactive
        self.every_s = every_s
        self._last = 0.0
        self._progress: Any = None
        self._task: Any = None

    def update(self, state: Any) -> None:
        """Called after every batch with the run's RunProgress."""
        if not self.enabled:
            return
        if self.interactive:
            self._bar(state)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            total = state.total or 0
            pct = f"{100 * state.done / total:.1f}%" if total else "?"
            rate = state.rate
            remaining = max(total - state.done, 0)
            eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
            print(
                f"progress job={state.job_id} done={state.done}/{total} ({pct}) failed={state.errors}"
                f" rate={rate:.1f}/s eta={eta}",
                file=sys.stderr,
                flush=True,
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
        """Stop the bar, if any."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def render_status(rows: list[dict[str, Any]]) -> None:
    """Print jobs as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="backfill jobs")
    for col in (
        "job",
        "mode",
        "status",
        "progress",
        "processed",
        "errors",
        "rate/s",
        "eta",
        "workers",
        "note",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["job_id"],
            r.get("mode", ""),
            r["status"],
            f"{100 * r.get('progress', 0):.1f}%",
            str(r["processed_count"]),
            str(r["error_count"]),
            "" if r.get("rate_per_s") is None else f"{r['rate_per_s']:.1f}",
            "" if r.get("eta_s") is None else f"{r['eta_s']}s",
            str(r.get("live_workers", 0)),
            r.get("status_reason") or r.get("throttle_state") or "",
        )
    Console().print(table)
