"""The report's guard section from plain data: hold periods, thinning a long series, the one-line answer."""

from __future__ import annotations

from starforge_backfill.runbook import report_guard


def reading(t: float, state: str = "healthy", probe: float = 1.0) -> dict:
    return {
        "t_s": t,
        "probe_ms": probe,
        "baseline_ms": 0.5,
        "active_sessions": 2,
        "replica_lag_s": None,
        "blocked_by_backfill": 0,
        "state": state,
        "reason": f"{state}: why",
    }


def test_holds_run_from_the_first_hold_reading_to_the_next_other_one() -> None:
    series = [reading(0), reading(5, "hold"), reading(10, "hold"), reading(15), reading(20, "hold"), reading(25)]
    assert report_guard._holds(series) == [
        {"from_s": 5, "to_s": 15, "reason": "hold: why"},
        {"from_s": 20, "to_s": 25, "reason": "hold: why"},
    ]


def test_a_long_series_is_thinned_but_keeps_every_change_of_state() -> None:
    series = [reading(i, "hold" if i in (501, 502, 777) else "healthy") for i in range(5000)]
    shown = report_guard._thin(series, 300)
    assert len(shown) < 320 and shown[-1]["t_s"] == 4999
    assert {501, 503, 777, 778} <= {p["t_s"] for p in shown}


def test_the_answer_says_peak_ratio_holds_and_yields() -> None:
    series = [reading(0, probe=0.5), reading(5, "hold", probe=2.0), reading(10)]
    text = report_guard._answer(series, report_guard._holds(series), 2, False)
    assert text == (
        "probe latency peaked at 4.0x its baseline; 1 hold(s) totalling 5s; 2 batch(es) cut short because they "
        "blocked a production session (3 readings)."
    )
    assert report_guard._answer(None, [], 0, True).startswith("Unknown: the production guard was off")


def test_the_chart_shades_holds_and_draws_three_panels() -> None:
    series = [reading(0), reading(5, "hold", probe=9.0), reading(10)]
    guard = {"readings": series, "holds": report_guard._holds(series)}
    svg = report_guard.svg(guard, {"series": [{"t_s": 0, "rate_per_s": 12.0}], "bucket_s": 10})
    assert svg.count('fill-opacity="0.18"') == 1 and svg.count('fill="none" stroke="#d0d7de"') == 3
    assert "probe_ms 9.0 at +5s (hold)" in svg and "rate_per_s 12.0" in svg
