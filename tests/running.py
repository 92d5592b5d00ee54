"""`run_job`: the runbook's `run` called the way tests write it (a range or a job id, plus options), no CLI."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from starforge_backfill.config import Config
from starforge_backfill.jobs import Selector
from starforge_backfill.runbook.run import RunOptions, RunProgress, RunResult, run


def run_job(
    cfg: Config,
    *,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
    job_id: str | None = None,
    reprocess: bool = False,
    retry_failed: bool = False,
    namecodes: list[str] | None = None,
    ids: list[Any] | None = None,
    batch_size: int | None = None,
    concurrency: int | None = None,
    force: bool = False,
    reason: str | None = None,
    mode: str = "run",
    progress: Callable[[RunProgress], None] | None = None,
    notify: Callable[[str], None] = lambda _m: None,
    stop: threading.Event | None = None,
) -> RunResult:
    """`runbook.run.run` with a Selector built from the range (None when only a job id is given)."""
    selector = None
    if from_ts is not None and to_ts is not None:
        selector = Selector.parse(
            from_ts, to_ts, reprocess=reprocess, retry_failed=retry_failed, namecodes=namecodes, ids=ids
        )
    options = RunOptions(batch_size=batch_size, concurrency=concurrency, force=force, reason=reason, mode=mode)
    return run(cfg, selector, job_id=job_id, options=options, progress=progress, notify=notify, stop=stop)
