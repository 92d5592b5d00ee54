"""bench/impact's arithmetic on known inputs: pgbench `-l` lines, nearest-rank percentiles, windows, the
batches' share of a window, best-of-windows and the verdicts. No timing here: the figures come from
`python -m bench.impact` (bench/README.md)."""

from __future__ import annotations

import pytest

from bench.impact import backfill, pgbench, summary

# pgbench 15 `-l` with --rate: client_id transaction_no time(us) script_no time_epoch time_us schedule_lag(us)
LOG = """\
0 1 935 0 1796180802 238168 101
1 1 738 0 1796180802 238181 77
2 7 skipped 0 1796180802 300000 5000
3 1 1200 0 1796180803 100000 90
0 2 400 0 1796180803 999999 12
1 2 25000 0 1796180804 000001 24000
3 7
"""


def test_parse_keeps_complete_lines_and_drops_skipped_and_torn_ones() -> None:
    entries = pgbench.parse(LOG.splitlines())
    assert entries == [
        (1796180802.238168, 0.935),
        (1796180802.238181, 0.738),
        (1796180803.1, 1.2),
        (1796180803.999999, 0.4),
        (1796180804.000001, 25.0),
    ]


def test_window_is_half_open_on_completion_time() -> None:
    entries = pgbench.parse(LOG.splitlines())
    assert pgbench.window(entries, 1796180802.0, 1796180803.1) == [0.935, 0.738]
    assert pgbench.window(entries, 1796180803.1, 1796180804.0) == [1.2, 0.4]
    assert pgbench.window(entries, 1796180804.0, 1796180805.0) == [25.0]


def test_nearest_rank_percentiles_on_1_to_1000() -> None:
    values = [float(v) for v in range(1000, 0, -1)]  # unsorted on purpose
    assert pgbench.percentile(values, 50) == 500.0
    assert pgbench.percentile(values, 90) == 900.0
    assert pgbench.percentile(values, 99) == 990.0
    assert pgbench.percentile(values, 100) == 1000.0
    assert pgbench.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        pgbench.percentile([], 50)


def test_one_slow_transaction_in_a_hundred_is_the_p99_not_the_p90() -> None:
    lat = [1.0] * 98 + [50.0, 60.0]
    s = pgbench.stats(lat, 2.0)
    assert (s["transactions"], s["tps"], s["p50"], s["p90"], s["p99"], s["max"]) == (100, 50.0, 1.0, 1.0, 50.0, 60.0)


def test_read_logs_merges_the_threads_files(tmp_path) -> None:
    (tmp_path / "w.123").write_text("0 1 1000 0 100 0 1\n")
    (tmp_path / "w.123.1").write_text("1 1 3000 0 101 500000 1\n1 2 30")
    (tmp_path / "w.stderr").write_text("0 1 9999 0 100 0 1\n")  # not a log
    assert sorted(pgbench.read_logs(tmp_path / "w")) == [(100.0, 1.0), (101.5, 3.0)]


def test_batches_count_by_their_share_of_the_window() -> None:
    # (begin epoch s, duration ms, snapshots): one before, one straddling the start, one inside, one across
    # the end, one after
    batches = [(90.0, 5000, 100), (98.0, 4000, 400), (103.0, 2000, 50), (108.0, 4000, 200), (120.0, 1000, 9)]
    assert backfill.overlap(batches, 100.0, 110.0) == pytest.approx(400 * 0.5 + 50 + 200 * 0.5)


def test_summary_takes_the_best_window_of_each_phase_against_the_best_quiet_one() -> None:
    def w(p50: float, p90: float, p99: float, rate: float | None = None) -> dict:
        return {"p50": p50, "p90": p90, "p99": p99, "snapshots_per_s": rate}

    result = {
        "settings": {"default": "default (defaults)", "guard-off": "guard-off (enabled=False)"},
        "phases": {
            "quiet-before": [w(0.5, 0.50, 1.2), w(0.4, 0.52, 1.9)],
            "default": [w(0.6, 0.9, 2.6, 40.0), w(0.7, 0.7, 3.0, 60.0), w(0.6, 0.8, 2.3, 50.0), w(1, 1, 9, 10.0)],
            "quiet-after": [w(0.45, 0.48, 1.5), w(0.5, 0.6, 1.3)],
            "guard-off": [{"error": "run made no progress"}],
        },
        "idle": [
            {"setting": "default", "snapshots_per_s": 90.0, "window_snapshots_per_s": 100.0},
            {"setting": "guard-off", "snapshots_per_s": 100.0},
            {"setting": "default", "snapshots_per_s": 95.0, "window_snapshots_per_s": 120.0},
            {"setting": "guard-off", "snapshots_per_s": 100.0},
        ],
    }
    s = summary.summarize(result)
    assert s["quiet_best"] == {"p50": 0.4, "p90": 0.48, "p99": 1.2}
    assert s["phases"]["default"]["best"] == {"p50": 0.6, "p90": 0.7, "p99": 2.3}
    assert s["phases"]["default"]["ratio"] == {"p50": 1.5, "p90": round(0.7 / 0.48, 3), "p99": round(2.3 / 1.2, 3)}
    assert s["phases"]["default"]["snapshots_per_s"] == 45.0  # median of 40, 60, 50, 10
    assert s["phases"]["guard-off"]["windows"] == 0 and s["phases"]["guard-off"]["errors"] == 1
    assert s["idle"]["on_over_off_pairs"] == [0.9, 0.95] and s["idle"]["on_over_off"] == 0.925
    verdicts = [v["verdict"] for v in s["verdicts"]]
    # p90 1.458 <= 1.5 met; p99 1.917 <= 2 met; 45 / median(100, 120) = 0.409 >= 0.25 met; 2 pairs: too few
    assert verdicts[:2] == ["MET", "MET"]  # 4 quiet windows, 4 run windows: enough for the method
    assert s["verdicts"][2]["value"] == round(45.0 / 110.0, 3) and verdicts[2] == "MET"
    assert verdicts[3] == "MET (too few windows/pairs for the target's method)"
    assert [p["setting"] for p in s["tradeoff"]] == ["default"]


def test_guard_reasons_map_to_the_signals_that_gave_them() -> None:
    both = "probe median 9.1 ms = 28.7x baseline 0.32 ms (>= 10x); autovacuum is running on a target table"
    assert backfill.signals(both) == ["probe", "autovacuum"]
    assert backfill.signals("WAL 300.0 MB/s > 256 MB/s") == ["wal-rate"]
    assert backfill.signals("") == []
