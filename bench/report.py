"""Ratios, targets, the printed table and the results files."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1_000_000


def ratios(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """floor_time/run_time (1.0 = run as fast as the floor) and naive_time/run_time (speed-up over naive)."""

    def seconds(name: str) -> float | None:
        m = methods.get(name, {})
        return None if "error" in m else m.get("seconds")

    run = seconds("run")

    def over_run(name: str) -> float | None:
        other = seconds(name)
        return round(other / run, 3) if run and other else None

    out: dict[str, Any] = {"floor_over_run": over_run("floor"), "naive_over_run": over_run("naive")}
    pairs = pair_ratios(methods)
    if pairs:  # floor and run alternated: the median of the adjacent pairs, each measured minutes apart at most
        out["floor_over_run"] = round(statistics.median(pairs), 3)
        out["floor_over_run_pairs"] = pairs
    # throughput on the v2 mix over throughput on the v1 mix (same snapshot count): run time / run_v2 time,
    # per alternated pair (run_i and run_v2_i ran back to back), the median of them
    v2_pairs = pair_ratios(methods, "run", "run_v2")
    out["v2_over_v1_throughput"] = round(statistics.median(v2_pairs), 3) if v2_pairs else over_run_v2(methods)
    if v2_pairs:
        out["v2_over_v1_throughput_pairs"] = v2_pairs
    # throughput with events over throughput without (etl_events written vs events.enabled: false): per
    # back-to-back pair run_noevents time / run time, the median of them; 1 - it is the events' cost
    ev_pairs = pair_ratios(methods, "run_noevents", "run")
    out["events_over_noevents_throughput"] = round(statistics.median(ev_pairs), 3) if ev_pairs else None
    if ev_pairs:
        out["events_over_noevents_throughput_pairs"] = ev_pairs
    return out


def over_run_v2(methods: dict[str, dict[str, Any]]) -> float | None:
    """run time / run_v2 time from the medians, when the runs were not paired."""
    run, v2 = methods.get("run", {}), methods.get("run_v2", {})
    if "error" in run or "error" in v2 or not run.get("seconds") or not v2.get("seconds"):
        return None
    return round(run["seconds"] / v2["seconds"], 3)


def pair_ratios(methods: dict[str, dict[str, Any]], top: str = "floor", bottom: str = "run") -> list[float]:
    """top_i/bottom_i (seconds) for each alternated pair (empty unless both were measured the same number of
    times)."""
    floor_s = methods.get(top, {}).get("seconds_each") or []
    run_s = methods.get(bottom, {}).get("seconds_each") or []
    if "error" in methods.get(top, {}) or "error" in methods.get(bottom, {}) or len(floor_s) != len(run_s):
        return []
    return [round(f / r, 3) for f, r in zip(floor_s, run_s, strict=True)]


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and pass/fail (None when it could not be measured)."""
    r, run = result["ratios"], result["methods"].get("run", {})
    run = {} if "error" in run else run
    v2 = result["methods"].get("run_v2", {})
    v2 = {} if "error" in v2 else v2
    wanted = [
        ("ratio_floor", "floor_time/run_time", ">=", 0.25, r["floor_over_run"]),
        ("ratio_naive", "naive_time/run_time", ">=", 5.0, r["naive_over_run"]),
        ("run_peak_rss", "run peak RSS (MB)", "<", 150.0, run.get("peak_rss_mb")),
        ("v2_throughput", "v2/v1 mix throughput (run)", ">=", 0.90, r.get("v2_over_v1_throughput")),
        ("run_v2_peak_rss", "run_v2 peak RSS (MB)", "<", 150.0, v2.get("peak_rss_mb")),
        ("events_cost", "events on/off throughput (run)", ">=", 0.95, r.get("events_over_noevents_throughput")),
    ]
    if result["concurrency"] == 2:
        wanted.append(("ratio_floor_c2", "floor_time/run_time at C=2", ">=", 0.40, r["floor_over_run"]))
    out = []
    for name, what, op, threshold, value in wanted:
        ok = None if value is None else (value >= threshold if op == ">=" else value < threshold)
        out.append({"name": name, "what": what, "target": f"{op} {threshold}", "value": value, "pass": ok})
    return out


def table(result: dict[str, Any]) -> str:
    """The human summary."""
    lines = [
        f"snapshots {result['snapshots']} ({result['ok_snapshots']} ok), rows {result['rows']:,}, "
        f"JSON {result['json_bytes'] / MB:,.1f} MB, concurrency {result['concurrency']}, "
        f"server {result['server'].get('server_version')} ({result['server'].get('origin')}, "
        f"fsync {result['server'].get('fsync')})",
        "",
        f"{'method':<8} {'seconds':>9} {'snapshots/s':>12} {'rows/s':>10} {'peak RSS MB':>12}  note",
    ]
    for name in ("floor", "run", "run_noevents", "run_v2", "naive"):
        m = result["methods"].get(name)
        if m is None:
            continue
        if "error" in m:
            lines.append(f"{name:<8} {'-':>9} {'-':>12} {'-':>10} {'-':>12}  ERROR: {m['error']}")
            continue
        rss = f"{m['peak_rss_mb']:.1f}" if m.get("peak_rss_mb") is not None else "-"
        lines.append(
            f"{name:<8} {m['seconds']:>9.2f} {m['snapshots_per_s']:>12.1f} "
            f"{m['rows_per_s']:>10,.0f} {rss:>12}  {m.get('note', '')}"
        )
    lines.append("")
    for name in ("floor", "run", "run_noevents", "run_v2"):
        each = result["methods"].get(name, {}).get("seconds_each")
        if each and len(each) > 1:
            lines.append(f"{name} each time (s): {', '.join(f'{s:.2f}' for s in each)} (the row above is the median)")
    if pairs := result["ratios"].get("floor_over_run_pairs"):
        shown = ", ".join(f"{p:.3f}" for p in pairs)
        lines.append(f"floor/run per alternated pair: {shown} (the target uses the median)")
    if pairs := result["ratios"].get("v2_over_v1_throughput_pairs"):
        shown = ", ".join(f"{p:.3f}" for p in pairs)
        lines.append(f"v2/v1 throughput (run s / run_v2 s) per pair: {shown} (the target uses the median)")
    if pairs := result["ratios"].get("events_over_noevents_throughput_pairs"):
        shown = ", ".join(f"{p:.3f}" for p in pairs)
        lines.append(f"events on/off throughput (run_noevents s / run s) per pair: {shown} (the target: the median)")
    if lines[-1] != "":
        lines.append("")
    for t in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        value = "-" if t["value"] is None else t["value"]
        lines.append(f"{verdict:<5} {t['what']:<28} {t['target']:<8} measured {value}")
    if result.get("agreement"):
        same = all(result["agreement"].values())
        diff = [k for k, v in result["agreement"].items() if not v]
        verdict = "identical" if same else "DIFFER in " + ", ".join(diff)
        lines.append(f"run vs naive table contents: {verdict}")
    if result.get("events_agreement"):
        diff = [k for k, v in result["events_agreement"].items() if not v]
        verdict = "identical" if not diff else "DIFFER in " + ", ".join(diff)
        lines.append(f"run vs run_noevents table contents: {verdict}")
    return "\n".join(lines)


def write(result: dict[str, Any], stamp: str) -> Path:
    """bench/results/<stamp>.json and latest.json (atomic)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, sort_keys=False, default=str) + "\n"
    path = RESULTS_DIR / f"{stamp}.json"
    path.write_text(text)
    tmp = RESULTS_DIR / f".latest.{os.getpid()}.tmp"
    tmp.write_text(text)
    tmp.replace(RESULTS_DIR / "latest.json")
    return path
