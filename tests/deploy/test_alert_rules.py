"""deploy/prometheus: the alert rules parse (`promtool check rules`), their unit tests pass (`promtool test rules`),
every rule is tested firing and quiet, and breaking a rule makes its tests fail. promtool is required: these
tests fail (never skip) without it; `.ci/run` installs Debian's `prometheus` package when it is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
TESTS = PROM / "alerts_test.yml"
RUNBOOK = ROOT / "runbooks" / "BACKFILL.md"


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: apt-get install -y --no-install-recommends prometheus (.ci/run does)")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def rules(path: Path = RULES) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]}


def test_promtool_checks_the_rules_and_the_example_config() -> None:
    res = promtool("check", "rules", RULES.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules())} rules found" in res.stdout
    res = promtool("check", "config", "prometheus.example.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_pass() -> None:
    res = promtool("test", "rules", TESTS.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_rule_is_tested_firing_and_quiet() -> None:
    cases: dict[str, list[list[Any]]] = {}
    for test in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in test["alert_rule_test"]:
            cases.setdefault(check["alertname"], []).append(check.get("exp_alerts") or [])
    assert set(cases) == set(rules()), "rules without tests, or tests of unknown rules"
    for alert, expected in cases.items():
        assert any(expected), f"{alert}: no case where it fires"
        assert any(not e for e in expected), f"{alert}: no case where it stays quiet"


def test_every_rule_has_severity_annotations_and_a_runbook_section() -> None:
    text = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)
    }
    for alert, rule in rules().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), alert
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], alert
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "runbooks/BACKFILL.md" and anchor == alert.lower(), alert
        assert anchor in anchors, f"{alert}: runbooks/BACKFILL.md has no section #{anchor}"


def _mutated(tmp_path: Path, alert: str, change: Any) -> subprocess.CompletedProcess[str]:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                change(rule)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    tests = yaml.safe_load(TESTS.read_text())  # only the alert's own cases: one promtool run stays short
    tests["tests"] = [t for t in tests["tests"] if any(c["alertname"] == alert for c in t["alert_rule_test"])]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)


@pytest.mark.parametrize("alert", sorted(rules()))
def test_a_rule_that_never_fires_fails_its_tests(alert: str, tmp_path: Path) -> None:
    def never(rule: dict[str, Any]) -> None:
        rule["expr"] = "vector(1) == 0"

    res = _mutated(tmp_path, alert, never)
    assert res.returncode != 0 and alert in res.stdout + res.stderr, res.stdout


@pytest.mark.parametrize("alert", sorted(a for a, r in rules().items() if "for" in r))
def test_a_rule_without_its_for_duration_fails_its_tests(alert: str, tmp_path: Path) -> None:
    def hasty(rule: dict[str, Any]) -> None:
        del rule["for"]

    res = _mutated(tmp_path, alert, hasty)
    assert res.returncode != 0 and alert in res.stdout + res.stderr, res.stdout
