"""Pure parts of canary, verify and report: the canary verdict, the parity fold, formats, the SVG chart."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from starforge_backfill.config import load_config
from starforge_backfill.errors import UsageError
from starforge_backfill.runbook import parity, report_render
from starforge_backfill.runbook.canary import evaluate
from starforge_backfill.runbook.report import parse_formats

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _sample(**over: Any) -> dict[str, Any]:
    base = {
        "connections": 5,
        "own_connections": 2,
        "max_connections": 100,
        "long_transactions": 0,
        "oldest_other_transaction_s": 0.0,
        "replica_lag_s": 0.0,
        "replicas": 0,
        "batches": 2,
        "p95_batch_ms": 300.0,
    }
    return base | over


def _verdict(samples: list[dict[str, Any]], processed: int = 100, failed: int = 0, outcome: str = "done") -> dict:
    cfg = load_config(None, env={})
    job = {"status": outcome, "status_reason": None, "processed_count": processed, "error_count": failed}
    return {c.name: c for c in evaluate(cfg, outcome, job, samples, None)}


def test_canary_verdict_passes_a_quiet_database() -> None:
    checks = _verdict([_sample(), _sample()])
    assert all(c.passed for c in checks.values()) and not any(c.warning for c in checks.values())


@pytest.mark.parametrize(
    ("sample", "kw", "failed_check"),
    [
        ({"connections": 85}, {}, "connections"),
        ({"long_transactions": 1, "oldest_other_transaction_s": 95.0}, {}, "long_transactions"),
        ({"replicas": 1, "replica_lag_s": 45.0}, {}, "replica_lag"),
        ({"p95_batch_ms": 61_000.0}, {}, "batch_latency"),
        ({}, {"processed": 98, "failed": 2}, "failure_rate"),
        ({}, {"processed": 0, "failed": 0}, "snapshots"),
        ({}, {"outcome": "paused"}, "job"),
    ],
)
def test_canary_verdict_fails_each_threshold(sample: dict, kw: dict, failed_check: str) -> None:
    checks = _verdict([_sample(), _sample(**sample)], **kw)
    assert [n for n, c in checks.items() if not c.passed] == [failed_check]


def test_canary_slow_batches_warn_below_the_limit() -> None:
    checks = _verdict([_sample(p95_batch_ms=5_000.0)])
    assert checks["batch_latency"].passed and "over twice throttle.target_batch" in (
        checks["batch_latency"].warning or ""
    )


def test_parity_fold_is_newest_wins_whatever_the_order() -> None:
    def snap(level: int, troops: list[dict], name: str | None) -> dict:
        out: dict[str, Any] = {"NameCode": "A_1", "ProfileData": {"Level": level, "Troops": troops}}
        if name:
            out["Name"] = name
        return out

    old = (uuid.uuid4(), T0, snap(1, [{"TroopId": 1, "Amount": 1}, {"TroopId": 2, "Amount": 5}], "Old"))
    new = (uuid.uuid4(), T0 + dt.timedelta(hours=1), snap(2, [{"TroopId": 1, "Amount": 9}], None))
    exp = parity.Expected()
    for sid, seen, raw in (old, new):
        exp.add(sid, seen, None, raw)
    assert exp.troops[1].value.amount == 9 and exp.troops[1].snapshot_id == new[0]
    assert exp.troops[2].value.amount == 5 and exp.troops[2].seen == T0  # absent from the newer: kept
    assert exp.username is not None and exp.username.value == "Old"  # the newest that has one
    assert exp.summary is not None and exp.summary.value.level == 2 and exp.namecode == "A_1"


def test_parity_mismatch_names_table_key_and_column() -> None:
    m = parity.Mismatch("user_pets", {"user_id": "u1", "pet_id": 7}, "xp", 10, 11)
    assert m.describe() == "user_pets[user_id=u1, pet_id=7].xp: expected 10, found 11"


def test_report_formats() -> None:
    assert parse_formats(None) == ("md", "html", "json")
    assert parse_formats("json, md") == ("md", "json")
    with pytest.raises(UsageError):
        parse_formats("md,pdf")


def test_svg_chart_is_inline_and_escaped() -> None:
    assert "no batches recorded" in report_render.svg_chart([], None)
    series = [
        {"t_s": 0.0, "rate_per_s": 10.0, "failed": 0, "batches": 1},
        {"t_s": 1.0, "rate_per_s": 25.0, "failed": 3, "batches": 2},
    ]
    svg = report_render.svg_chart(series, 1.0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert (
        "<polyline" in svg and svg.count("<circle") == 2 and svg.count("<rect") == 2
    )  # the plot area and one error bar
    assert "http" not in svg
    page = report_render.html(
        "<job>",
        {
            "job": {"status": "done"},
            "preflight": {"recorded": False},
            "steps": [],
            "verification": None,
            "canary": None,
            "throughput": {"series": series, "bucket_s": 1.0, "batches": 3, "snapshots": 35, "failed": 3},
            "gate_events": [],
            "errors_by_type": {},
            "error_messages": [],
            "quarantine": {"count": 0, "folder": "q", "snapshots": []},
            "placeholders": {"count": 0, "rows": []},
            "artifacts": [],
            "config_matches_job": True,
        },
        {"generated_at": "now", "tool_version": "x", "schema_version": 1},
    )
    assert "&lt;job&gt;" in page and "<job>" not in page
