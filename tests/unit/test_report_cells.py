"""Pure parts of the truthful report: cells (times to the second, key/value lists), the timeline's bands and
workers series, the chart's marks, and status's workers line."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starforge_backfill.config import load_config
from starforge_backfill.runbook import report_render, report_timeline
from starforge_backfill.runbook.control import _workers_line
from starforge_backfill.runbook.run import ramp_words

T = dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _ev(kind: str, s: float, message: str = "", **details: Any) -> dict[str, Any]:
    return {"kind": kind, "created_at": T + dt.timedelta(seconds=s), "message": message, "details": details}


def test_cells_are_key_value_lists_and_times_are_to_the_second() -> None:
    fmt = report_render._fmt
    assert fmt("2024-01-01T12:00:00.123456+00:00") == "2024-01-01T12:00:00Z"
    assert fmt("2024-01-01T14:00:00.5+02:00") == "2024-01-01T12:00:00Z"
    assert fmt(T) == "2024-01-01T12:00:00Z"
    assert fmt({"b": 2, "a": {"x": [1, 2]}}) == "a: {x: [1, 2]}\nb: 2"
    assert fmt([{"k": 1}, {"k": 2}]) == "{k: 1}\n{k: 2}" and fmt(["a", "b"]) == "a, b"
    assert fmt("not a time 2024") == "not a time 2024" and fmt(None) == "-" and fmt(True) == "yes"
    assert report_render._md_cell({"a": 1, "b": "x|y"}) == "a: 1; b: x\\|y"
    html = report_render._table(("k",), [[{"a": 1, "b": "<2>"}]])
    assert "<td>a: 1<br>b: &lt;2&gt;</td>" in html


def test_bands_pause_hold_outage_and_interruption() -> None:
    events = [
        _ev("worker_start", 0, worker="w1"),
        _ev("paused", 10, "lunch", source="operator"),
        _ev("worker_end", 10.5, worker="w1", outcome="paused"),
        _ev("resumed", 70),
        _ev("worker_start", 70.2, worker="w2"),
        _ev("throttle", 80, "replica lag 12 s", key="lag", sleep_s=2),
        _ev("throttle", 95, "healthy: throttle lifted", key=None, sleep_s=0),
        _ev("outage", 120, "database connection lost", seconds=5),
        _ev("worker_end", 130, worker="w2", outcome="interrupted"),
        _ev("interrupted", 130.1, "run interrupted; checkpoint saved"),
        _ev("worker_start", 200, worker="w3"),
        _ev("worker_end", 210, worker="w3", outcome="done"),
    ]
    bands = report_timeline.bands(events, None)
    got = [(b["kind"], b["seconds"]) for b in bands]
    assert got == [("pause", 60.0), ("hold", 15.0), ("outage", 5.0), ("interrupted", 70.0)]
    assert bands[0]["label"] == "paused (operator): lunch"
    series = report_timeline.workers_series(events)
    assert [w["workers"] for w in series] == [1, 0, 1, 0, 1, 0]
    report_timeline.relative(series, T, ("at",))
    assert series[2]["at_s"] == 70.2
    assert report_render.workers_during(series, 60, 20) == 1 and report_render.workers_during(series, 140, 20) == 0


def test_a_gap_while_paused_is_a_pause_not_an_interruption_and_an_open_pause_runs_to_until() -> None:
    events = [
        _ev("worker_start", 0, worker="w"),
        _ev("gate", 5, "replica lag"),
        _ev("worker_end", 6, worker="w", outcome="paused"),
    ]
    bands = report_timeline.bands(events, T + dt.timedelta(seconds=65))
    assert [(b["kind"], b["seconds"]) for b in bands] == [("pause", 60.0)]
    assert bands[0]["label"].startswith("paused (health gate)")


def test_the_chart_shades_labelled_bands_and_draws_the_workers() -> None:
    series = [{"t_s": float(i), "rate_per_s": 5.0, "failed": 0, "batches": 1} for i in range(10)]
    bands = [{"kind": "pause", "label": "paused (operator): <lunch>", "from_s": 2.0, "to_s": 5.0, "seconds": 3.0}]
    workers = [{"at_s": 0.0, "workers": 1}, {"at_s": 6.0, "workers": 2}]
    svg = report_render.svg_chart(series, 1.0, bands=bands, workers=workers)
    assert 'class="band band-pause"' in svg and "paused (operator): &lt;lunch&gt; (3s)" in svg
    assert 'class="workers"' in svg and "1 worker</text>" in svg and "2 workers</text>" in svg
    assert "band" not in report_render.svg_chart(series, 1.0)


def test_status_says_how_many_workers_of_how_many_and_why_fewer() -> None:
    cfg = load_config(None, env={}, overrides={"database.dsn": "host=localhost"})
    running = {"status": "running", "mode": "run", "concurrency": 2}
    assert _workers_line(cfg, running, 1, False) == "1 of 2 (ramp: +1 every 60 s)"
    assert _workers_line(cfg, running, 2, False) == "2 of 2"
    assert _workers_line(cfg, running | {"concurrency": 4}, 2, False) == "2 of 4 (ramp: 1 -> 2 -> 4, a step every 60 s)"
    assert _workers_line(cfg, running | {"mode": "dry-run"}, 1, False) == "1 of 2"
    assert _workers_line(cfg, running, 0, True) == "0 of 2"
    assert _workers_line(cfg, running | {"status": "done"}, 0, False) == "0 of 2"
    assert ramp_words([1, 2], 60) == "+1 every 60 s" and ramp_words([2, 4, 6], 30) == "+2 every 30 s"
