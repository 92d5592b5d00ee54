"""Preflight's monitoring item against a real Prometheus (Debian's `prometheus` binary, started per test on a free
loopback port, ~0.2 s): it passes only when the server has loaded every rule group and alert of alerts.yml.
Fails (never skips) when the binary is missing; `.ci/run` installs it."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import yaml
from deploy_support import StartPrometheus, free_port

from starforge_backfill.config import load_config
from starforge_backfill.monitoring import alert_rules_file, rule_groups, rules_loaded
from starforge_backfill.runbook.preflight import preflight

FROM, TO = "2024-01-01", "2024-02-01"


def _cfg(dsn: str, tmp_path: Path, url: str) -> object:
    return load_config(
        None,
        overrides={
            "database.dsn": dsn,
            "artifacts_dir": str(tmp_path / "artifacts"),
            "metrics.file": str(tmp_path / "m.prom"),
            "metrics.prometheus_url": url,
        },
    )


def test_preflight_passes_when_prometheus_has_loaded_the_shipped_rules(
    pg_dsn: str, tmp_path: Path, start_prometheus: StartPrometheus
) -> None:
    url = start_prometheus([alert_rules_file()])
    check = preflight(_cfg(pg_dsn, tmp_path, url), from_ts=FROM, to_ts=TO).check("monitoring")  # type: ignore[arg-type]
    n = sum(len(a) for a in rule_groups().values())
    assert check.result == "pass", check.detail
    assert f"{n} alert rules loaded" in check.detail and check.data["rules"]["missing_groups"] == []
    # what the server itself says: the same groups
    with urllib.request.urlopen(url + "/api/v1/rules") as resp:
        loaded = {g["name"] for g in json.load(resp)["data"]["groups"]}
    assert loaded == set(rule_groups())


def test_preflight_fails_when_prometheus_runs_without_the_rules(
    pg_dsn: str, tmp_path: Path, start_prometheus: StartPrometheus
) -> None:
    url = start_prometheus([])
    check = preflight(_cfg(pg_dsn, tmp_path, url), from_ts=FROM, to_ts=TO).check("monitoring")  # type: ignore[arg-type]
    assert check.result == "fail"
    assert set(check.data["rules"]["missing_groups"]) == set(rule_groups())
    assert "not loaded" in check.detail and "Prometheus ready" in check.detail


def test_an_older_rules_file_with_an_alert_and_a_group_missing_fails_naming_them(
    tmp_path: Path, start_prometheus: StartPrometheus
) -> None:
    doc = yaml.safe_load(alert_rules_file().read_text())
    dropped_group = doc["groups"].pop()["name"]
    dropped_alert = doc["groups"][0]["rules"].pop(0)["alert"]
    older = tmp_path / "older-alerts.yml"
    older.write_text(yaml.safe_dump(doc))
    res = rules_loaded(start_prometheus([older]))
    assert not res.ok
    assert res.data["missing_groups"] == [dropped_group] and res.data["missing_alerts"] == [dropped_alert]
    assert dropped_group in res.detail and dropped_alert in res.detail


def test_a_rule_that_fails_to_evaluate_fails_the_check(tmp_path: Path, start_prometheus: StartPrometheus) -> None:
    expected = {"starforge-test": ["Broken"]}
    rules = tmp_path / "broken.yml"
    # parses, but fails at evaluation: two series on the "one" side of a one-to-many match
    two = 'label_replace(vector(1), "a", "1", "", "") or label_replace(vector(1), "a", "2", "", "")'
    group = {
        "name": "starforge-test",
        "interval": "1s",
        "rules": [{"alert": "Broken", "expr": f"vector(1) * on() group_left() ({two})"}],
    }
    rules.write_text(yaml.safe_dump({"groups": [group]}))
    url = start_prometheus([rules])
    deadline = time.monotonic() + 20
    res = rules_loaded(url, expected=expected)
    while time.monotonic() < deadline and not res.data.get("broken"):
        time.sleep(0.2)
        res = rules_loaded(url, expected=expected)
    assert not res.ok and res.data["broken"], res.detail


def test_an_unreachable_prometheus_fails_the_check() -> None:
    res = rules_loaded(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert not res.ok and "cannot read the rules" in res.detail
