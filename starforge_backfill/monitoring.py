"""The shipped alert rules (`deploy/prometheus/alerts.yml`) and whether a Prometheus server has them loaded.

Preflight's `monitoring` item calls `rules_loaded(url)` when `metrics.prometheus_url` is set: it reads
`GET <url>/api/v1/rules?type=alert` and passes only when every rule group of alerts.yml is loaded with
every alert of that group, and none of them fails to evaluate (`health: err`). The expected names come from
the alerts.yml this tool ships (inside the installed package, or the repository's `deploy/`), so a server
still running an older rules file fails too, naming what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from starforge_backfill.config import redact_dsn

RULES_TIMEOUT_S = 3.0


def deploy_dir() -> Path:
    """Where deploy/ lives: inside the installed package, or the repository's `deploy/`."""
    packaged = Path(__file__).with_name("deploy")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "deploy"


def alert_rules_file() -> Path:
    """The shipped alert rules."""
    return deploy_dir() / "prometheus" / "alerts.yml"


def rule_groups(path: Path | None = None) -> dict[str, list[str]]:
    """{group name: [alert names]} of an alert rules file (the shipped one by default)."""
    doc = yaml.safe_load((path or alert_rules_file()).read_text(encoding="utf-8")) or {}
    return {
        str(g["name"]): [str(r["alert"]) for r in g.get("rules") or [] if "alert" in r] for g in doc.get("groups") or []
    }


@dataclasses.dataclass
class RulesCheck:
    """What a Prometheus server has loaded of the shipped rules."""

    ok: bool
    detail: str
    data: dict[str, Any]


def rules_loaded(
    url: str, *, timeout: float = RULES_TIMEOUT_S, expected: dict[str, list[str]] | None = None
) -> RulesCheck:
    """Ask Prometheus at `url` for its alerting rules; ok when every expected group and alert is loaded and healthy."""
    expected = rule_groups() if expected is None else expected
    endpoint = url.rstrip("/") + "/api/v1/rules?type=alert"
    shown = redact_dsn(url)
    data: dict[str, Any] = {"expected_groups": sorted(expected)}
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as resp:
            body = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        return RulesCheck(False, f"Prometheus {shown} answered HTTP {exc.code} to /api/v1/rules", data)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return RulesCheck(False, f"cannot read the rules of Prometheus {shown}: {reason}", data)
    groups = (body.get("data") or {}).get("groups") if isinstance(body, dict) else None
    if body.get("status") != "success" or not isinstance(groups, list):
        return RulesCheck(False, f"Prometheus {shown}: /api/v1/rules did not answer a rules list", data)
    loaded: dict[str, dict[str, Any]] = {}
    for group in groups:
        rules = loaded.setdefault(str(group.get("name")), {})
        for rule in group.get("rules") or []:
            rules[str(rule.get("name"))] = rule
    missing_groups = sorted(g for g in expected if g not in loaded)
    missing_alerts = sorted(a for g, alerts in expected.items() if g in loaded for a in alerts if a not in loaded[g])
    broken = sorted(
        f"{name} ({str(rule.get('lastError') or 'error')[:120]})"
        for g in expected
        for name, rule in loaded.get(g, {}).items()
        if rule.get("health") == "err"
    )
    data |= {"missing_groups": missing_groups, "missing_alerts": missing_alerts, "broken": broken}
    problems = []
    if missing_groups:
        problems.append(f"rule group(s) {', '.join(missing_groups)} not loaded")
    if missing_alerts:
        problems.append(f"alert(s) {', '.join(missing_alerts)} missing (an older alerts.yml?)")
    if broken:
        problems.append(f"alert(s) failing to evaluate: {'; '.join(broken)}")
    if problems:
        hint = "load deploy/prometheus/alerts.yml (docs/OPERATIONS.md, Alerts and dashboard)"
        return RulesCheck(False, f"Prometheus {shown}: {'; '.join(problems)}: {hint}", data)
    count = sum(len(a) for a in expected.values())
    return RulesCheck(True, f"{count} alert rules loaded ({', '.join(sorted(expected))})", data)
