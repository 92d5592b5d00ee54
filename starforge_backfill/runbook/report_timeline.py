"""The report's timeline, read from a job's events: workers over time, and the bands the chart shades.

Workers: each `worker_start` / `worker_end` event (written by `run` as each worker thread starts and ends) moves
the count of live workers; the series is that count at every change, so a ramp held at 1 worker shows as 1
however high the job's concurrency. Bands (labelled, shaded on the chart, listed in the Markdown):

- pause: a `paused` (operator, admin API) or `gate` (a health gate) event, until the next `resumed`;
- hold: a `throttle` event that asks workers to sleep, until the throttle lifts; a `ramp` event that held the
  ramp is an instant mark;
- outage: an `outage` event (the database away for its `seconds`, ending when the event was written);
- interrupted: no worker live after the last one ended without finishing or pausing the job (Ctrl-C, a crash:
  an `interrupted` event, or a worker_end whose outcome is neither done nor paused), until a worker starts again.

Plain data only (datetimes in, datetimes and seconds out); rendering is in `report_render`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

PAUSE, HOLD, OUTAGE, INTERRUPTED = "pause", "hold", "outage", "interrupted"
_CALM_OUTCOMES = ("done", "paused", "failed")  # a worker that ended so left no gap to explain


def workers_series(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{"at", "workers"}]: the live worker count after each worker_start / worker_end event, oldest first."""
    live: set[str] = set()
    out: list[dict[str, Any]] = []
    for e in events:
        if e["kind"] not in ("worker_start", "worker_end"):
            continue
        name = str((e.get("details") or {}).get("worker") or e.get("id"))
        (live.add if e["kind"] == "worker_start" else live.discard)(name)
        if out and out[-1]["at"] == e["created_at"]:
            out[-1]["workers"] = len(live)
        else:
            out.append({"at": e["created_at"], "workers": len(live)})
    return out


def bands(events: list[dict[str, Any]], until: dt.datetime | None) -> list[dict[str, Any]]:
    """[{"kind", "label", "from", "to"}]: pauses, holds, outages and interruptions, oldest first. A band still
    open at the last event ends at `until` (the report's time), or at its own start when `until` is None."""
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    live: set[str] = set()

    def start(kind: str, at: dt.datetime, label: str) -> None:
        if kind not in open_:
            open_[kind] = {"kind": kind, "label": label, "from": at, "to": None}
            out.append(open_[kind])

    def end(kind: str, at: dt.datetime) -> None:
        band = open_.pop(kind, None)
        if band is not None:
            band["to"] = at

    for e in events:
        kind, at, d = e["kind"], e["created_at"], e.get("details") or {}
        message = e.get("message") or ""
        if kind in ("paused", "gate"):
            who = "operator" if d.get("source") == "operator" else ("health gate" if kind == "gate" else "engine")
            start(PAUSE, at, f"paused ({who}): {message}")
        elif kind == "resumed":
            end(PAUSE, at)
        elif kind == "throttle":
            if d.get("key") and float(d.get("sleep_s") or 0) > 0:
                start(HOLD, at, f"hold (throttle): {message}")
            else:
                end(HOLD, at)
        elif kind == "ramp" and "held" in message:
            out.append({"kind": HOLD, "label": message, "from": at, "to": at})
        elif kind == "outage":
            seconds = float(d.get("seconds") or 0)
            out.append({"kind": OUTAGE, "label": message, "from": at - dt.timedelta(seconds=seconds), "to": at})
        elif kind == "interrupted":
            start(INTERRUPTED, at, f"interrupted: {message or 'no worker live'}")
        elif kind == "worker_start":
            live.add(str(d.get("worker")))
            end(INTERRUPTED, at)
        elif kind == "worker_end":
            live.discard(str(d.get("worker")))
            if not live and str(d.get("outcome")) not in _CALM_OUTCOMES and PAUSE not in open_:
                start(INTERRUPTED, at, f"interrupted: no worker live (the last ended {d.get('outcome')})")
    for band in open_.values():
        band["to"] = until if until is not None and until > band["from"] else band["from"]
    for band in out:
        band["seconds"] = round((band["to"] - band["from"]).total_seconds(), 3)
    return out


def relative(items: list[dict[str, Any]], t0: dt.datetime | None, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Add `<key>_s` (seconds since `t0`, the chart's origin) beside each datetime `key` of each item."""
    if t0 is None:
        return items
    for item in items:
        for key in keys:
            if isinstance(item.get(key), dt.datetime):
                item[f"{key}_s"] = round((item[key] - t0).total_seconds(), 3)
    return items
