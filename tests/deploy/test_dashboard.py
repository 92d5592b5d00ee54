"""deploy/grafana/backfill.json: a Grafana dashboard model with a datasource variable that every query uses, the
panels the runbook's monitoring needs, and PromQL that Prometheus's own parser accepts (`promtool check rules`
on the expressions, Grafana's variables given values). Fails (never skips) without promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "backfill.json"
GRAFANA_VARS = {"$__rate_interval": "5m", "${datasource}": "prometheus", "$job_id": ".*"}
NEEDED = {
    "Throughput",
    "Failure rate",
    "Job backlog",
    "Queue depth",
    "Batch latency",
    "DB connections",
    "Throttle and pause",
    "Job status",
}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_the_model_has_a_datasource_variable_that_every_query_uses() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip(), p["title"]
    assert variables["job_id"]["datasource"]["uid"] == "${datasource}"


def test_the_panels_cover_the_runbook_and_fit_the_grid() -> None:
    titles = {p["title"] for p in panels()}
    assert titles >= NEEDED, f"missing panels: {sorted(NEEDED - titles)}"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: apt-get install -y --no-install-recommends prometheus (.ci/run does)")
    rules = []
    for p in panels():
        for t in p["targets"]:
            expr = t["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{p['title']}: unknown Grafana variable in {expr}"
            rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules)} rules found" in res.stdout
