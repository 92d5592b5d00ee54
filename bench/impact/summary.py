"""From the windows to the figures: best window per phase, ratios against the quiet server, throughput
ratios, a verdict per target of issue 14, and the tables the bench prints."""

from __future__ import annotations

import statistics
from typing import Any

QUIET_PHASES = ("quiet-before", "quiet-middle", "quiet-after")
PCTS = ("p50", "p90", "p99")
TARGETS = {"p90": 1.5, "p99": 2.0, "progress": 0.25, "guard_cost": 0.10}
MIN_WINDOWS = 4  # "the best of at least 4 windows"


def best(windows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The best (lowest) p50, p90 and p99 over the windows, each on its own."""
    out: dict[str, float | None] = {}
    for p in PCTS:
        values = [w[p] for w in windows if w.get(p) is not None]
        out[p] = min(values) if values else None
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per phase: windows, best percentiles and their ratio to the best quiet ones, median backfill snap/s;
    idle throughput; the trade-off points; the verdicts."""
    phases: dict[str, list[dict[str, Any]]] = result["phases"]
    quiet = [w for name in QUIET_PHASES for w in phases.get(name, []) if "error" not in w]
    quiet_best = best(quiet)
    table: dict[str, Any] = {}
    for name, windows in phases.items():
        good = [w for w in windows if "error" not in w]
        b = best(good)
        entry: dict[str, Any] = {"windows": len(good), "errors": len(windows) - len(good), "best": b}
        entry["ratio"] = {p: _ratio(b[p], quiet_best[p]) for p in PCTS}
        if name not in QUIET_PHASES:
            entry["snapshots_per_s"] = _median([w.get("snapshots_per_s") for w in good])
        table[name] = entry
    table["quiet (all)"] = {"windows": len(quiet), "best": quiet_best, "ratio": dict.fromkeys(PCTS, 1.0)}
    idle = _idle(result.get("idle", []))
    points = [
        {
            "setting": name,
            "label": result["settings"].get(name, name),
            "snapshots_per_s": entry["snapshots_per_s"],
            "p99_ratio": entry["ratio"]["p99"],
            "p90_ratio": entry["ratio"]["p90"],
        }
        for name, entry in table.items()
        if "snapshots_per_s" in entry and entry["windows"]
    ]
    out = {"quiet_best": quiet_best, "phases": table, "idle": idle, "tradeoff": points}
    out["verdicts"] = verdicts(table, idle)
    return out


def _pairs(a_runs: list[dict[str, Any]], b_runs: list[dict[str, Any]]) -> list[float]:
    return [
        round(a["snapshots_per_s"] / b["snapshots_per_s"], 3)
        for a, b in zip(a_runs, b_runs, strict=False)
        if "error" not in a and "error" not in b and a.get("snapshots_per_s") and b.get("snapshots_per_s")
    ]


def _idle(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Idle-server throughput, guard on and off (and on with the batch pinned), alternated: medians, and the
    median of the adjacent (on, off) pairs' throughput ratios."""
    on = [r for r in runs if r["setting"] == "default"]
    off = [r for r in runs if r["setting"] == "guard-off"]
    pinned = [r for r in runs if r["setting"] == "guard-on-batch-250"]
    pairs = _pairs(on, off)
    pinned_pairs = _pairs(pinned, off)
    return {
        "pinned_snapshots_per_s": _median([r.get("snapshots_per_s") for r in pinned if "error" not in r]),
        "pinned_over_off_pairs": pinned_pairs,
        "pinned_over_off": round(statistics.median(pinned_pairs), 3) if pinned_pairs else None,
        "on_snapshots_per_s": _median([r.get("snapshots_per_s") for r in on if "error" not in r]),
        "off_snapshots_per_s": _median([r.get("snapshots_per_s") for r in off if "error" not in r]),
        "on_window_snapshots_per_s": _median([r.get("window_snapshots_per_s") for r in on if "error" not in r]),
        "on_over_off_pairs": pairs,
        "on_over_off": round(statistics.median(pairs), 3) if pairs else None,
    }


def _verdict(ok: bool | None, enough: bool) -> str:
    if ok is None:
        return "n/a (not measured)"
    text = "MET" if ok else "NOT MET"
    return text if enough else f"{text} (too few windows/pairs for the target's method)"


def verdicts(table: dict[str, Any], idle: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per target of issue 14 part 5."""
    quiet_n = table["quiet (all)"]["windows"]
    run = table.get("default", {"windows": 0, "ratio": dict.fromkeys(PCTS), "snapshots_per_s": None})
    enough = run["windows"] >= MIN_WINDOWS and quiet_n >= MIN_WINDOWS
    out = []
    for p in ("p90", "p99"):
        r = run["ratio"][p]
        out.append(
            {
                "target": f"{p} during the default run <= {TARGETS[p]}x quiet (best of {run['windows']} vs best of "
                f"{quiet_n})",
                "value": r,
                "verdict": _verdict(None if r is None else r <= TARGETS[p], enough),
            }
        )
    idle_w = idle.get("on_window_snapshots_per_s")
    progress = _ratio(run.get("snapshots_per_s"), idle_w)
    out.append(
        {
            "target": f"backfill under the read load >= {TARGETS['progress']:.0%} of its idle throughput",
            "value": progress,
            "verdict": _verdict(None if progress is None else progress >= TARGETS["progress"], run["windows"] >= 1),
        }
    )
    cost = idle.get("on_over_off")
    out.append(
        {
            "target": f"guard on an idle server costs <= {TARGETS['guard_cost']:.0%} of throughput (on/off >= "
            f"{1 - TARGETS['guard_cost']:.2f})",
            "value": cost,
            "verdict": _verdict(
                None if cost is None else cost >= 1 - TARGETS["guard_cost"], len(idle.get("on_over_off_pairs", [])) >= 3
            ),
        }
    )
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def guard_note(g: dict[str, Any] | None) -> str:
    """`guard: healthy 2, hold 3 (probe 3)` from a window's guard summary."""
    if not g or not g.get("states"):
        return ""
    states = ", ".join(f"{k} {n}" for k, n in g["states"].items())
    if g.get("reasons"):
        states += " (" + ", ".join(f"{k} {n}" for k, n in g["reasons"].items()) + ")"
    if g.get("xacts_per_s_max") is not None:
        states += f"; server {_fmt(g.get('xacts_per_s_min'), 0)}-{_fmt(g['xacts_per_s_max'], 0)} xact/s"
    return f"guard: {states}"


def windows_table(result: dict[str, Any]) -> str:
    """Every window, in the order measured: the noise is the point."""
    lines = [
        "| phase | # | tx | tps | p50 ms | p90 ms | p99 ms | max ms | backfill snap/s | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, windows in result["phases"].items():
        for i, w in enumerate(windows, 1):
            note = w.get("error") or w.get("note") or ""
            if w.get("guard") and w["guard"]["states"]:
                g = w["guard"]
                note = f"{note} {guard_note(g)}"
                if g["allowed_workers_min"] is not None or g["batch_size_min"] is not None:
                    note += (
                        f"; fewest workers {g['allowed_workers_min'] or 'all'}, batch cap {g['batch_size_min'] or '-'}"
                    )
            if w.get("events"):
                kinds = {k: n for k, n in w["events"].items() if k in ("guard", "guard_disabled", "throttle", "gate")}
                if kinds:
                    note = f"{note}; events " + ", ".join(f"{k} {n}" for k, n in kinds.items())
            note = note.strip("; ")
            lines.append(
                f"| {name} | {i} | {_fmt(w.get('transactions'))} | {_fmt(w.get('tps'), 0)} | {_fmt(w.get('p50'))} "
                f"| {_fmt(w.get('p90'))} | {_fmt(w.get('p99'))} | {_fmt(w.get('max'))} "
                f"| {_fmt(w.get('snapshots_per_s'), 1)} | {note} |"
            )
    window = result["plan"]["window_s"]
    for r in result.get("idle", []):
        note = r.get("error") or f"whole run {_fmt(r.get('seconds'))} s, {r.get('snapshots')} snapshots"
        if r.get("guard") and r["guard"]["states"]:
            note += "; " + guard_note(r["guard"])
        lines.append(
            f"| idle:{r['setting']} | | | | | | | | {_fmt(r.get('snapshots_per_s'), 1)} "
            f"(first {window:g} s {_fmt(r.get('window_snapshots_per_s'), 1)}) | {note} |"
        )
    return "\n".join(lines)


def summary_block(result: dict[str, Any], s: dict[str, Any]) -> str:
    """The block to paste into bench/README.md."""
    cond = result["conditions"]
    lines = [
        f"bench/impact {result['generated_at']} ({'quick' if result['quick'] else 'full'}): "
        f"load average {cond['loadavg_before']} before, {cond['loadavg_after']} after; "
        f"{result['server']['origin']} server, fsync {result['server'].get('fsync')}",
        f"read load: pgbench {result['load']['script']} -R {result['load']['rate']} -c {result['load']['clients']} "
        f"-j {result['load']['threads']}, scale {result['scale']}; windows of {result['plan']['window_s']:g} s; "
        f"backfill: run --concurrency {result['concurrency']} (ramp [{result['concurrency']}]) over "
        f"{result['corpus']['snapshots']} snapshots",
        "",
        "| phase | windows | best p50 ms | best p90 ms | best p99 ms | p50 / p90 / p99 vs quiet "
        "| backfill snap/s (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in s["phases"].items():
        r = e["ratio"]
        lines.append(
            f"| {name} | {e['windows']} | {_fmt(e['best']['p50'])} | {_fmt(e['best']['p90'])} | "
            f"{_fmt(e['best']['p99'])} | {_fmt(r['p50'])} / {_fmt(r['p90'])} / {_fmt(r['p99'])} | "
            f"{_fmt(e.get('snapshots_per_s'), 1)} |"
        )
    i = s["idle"]
    lines += [
        "",
        f"idle server (no read load), whole runs: guard on {_fmt(i['on_snapshots_per_s'], 1)} snap/s, off "
        f"{_fmt(i['off_snapshots_per_s'], 1)} snap/s; on/off pairs {i['on_over_off_pairs']} -> median "
        f"{_fmt(i['on_over_off'], 3)}; guard on, first {result['plan']['window_s']:g} s: "
        f"{_fmt(i['on_window_snapshots_per_s'], 1)} snap/s",
        f"guard on with the batch pinned at 250 (as guard-off's): {_fmt(i.get('pinned_snapshots_per_s'), 1)} snap/s; "
        f"pinned/off pairs {i.get('pinned_over_off_pairs')} -> median {_fmt(i.get('pinned_over_off'), 3)} "
        "(the guard's own cost, without the adaptive sizer's)",
        "",
        "| target | value | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {v['target']} | {_fmt(v['value'], 3)} | {v['verdict']} |" for v in s["verdicts"]]
    return "\n".join(lines)
