"""In-process announcements of what the engine does, for whoever listens (metrics, today).

The engine and the queue worker `announce(event, fields)` each finished batch (`batch`), each worker that
starts or ends (`worker_start`, `worker_end`) and each throttle back-off or gate pause (`throttle`,
`gate_pause`); `subscribe` adds a listener for the whole process. A listener's error is logged and never
reaches the backfill. Log lines are written separately: changing a log line cannot change what a listener sees.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

Listener = Callable[[str, Mapping[str, Any]], None]

log = logging.getLogger("starforge_backfill.listeners")
_lock = threading.Lock()
_listeners: tuple[Listener, ...] = ()


def subscribe(listener: Listener) -> None:
    """Call `listener(event, fields)` for every announcement from now on (once, however often subscribed)."""
    global _listeners
    with _lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)


def unsubscribe(listener: Listener) -> None:
    """Stop calling `listener` (nothing happens if it was not subscribed)."""
    global _listeners
    with _lock:
        _listeners = tuple(fn for fn in _listeners if fn != listener)


def announce(event: str, fields: Mapping[str, Any]) -> None:
    """Tell every listener; a listener that raises is logged at debug level and skipped."""
    for listener in _listeners:
        try:
            listener(event, fields)
        except Exception:  # a metrics bug must never break a backfill
            log.debug("listener %r failed on %s", listener, event, exc_info=True)


def batch_fields(
    job_id: str, worker: str, snapshots: int, result: Any, duration_s: float, **extra: Any
) -> dict[str, Any]:
    """The one record of a finished batch (`result` an `etl.pipeline.BatchResult`), as listeners and logs get it."""
    return {
        "job_id": job_id,
        "worker": worker,
        "snapshots": snapshots,
        "applied": result.applied,
        "failed": result.failed,
        "errors_by_type": dict(result.errors_by_type),
        "rows_written": dict(result.rows_written),
        "placeholders": len(result.placeholders),
        "duration_ms": round(duration_s * 1000, 1),
        "duration_s": duration_s,
        **extra,
    }
