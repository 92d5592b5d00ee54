"""Every metric the alert rules and the dashboard reference is one the exporter really emits: a real `run
--metrics-file` and a real worker's /metrics on a test database, their sample names parsed from the
Prometheus text, against the names a PromQL tokenizer finds in alerts.yml and backfill.json."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from opx_support import FROM, TO, cli, insert_snapshots, start_cli, wait_for
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "backfill.json"
# Series Prometheus makes itself, not the exporter: `up` for each scrape target (BackfillWorkerDown).
SYNTHESIZED = {"up"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
KEYWORDS |= {"inf", "nan", "start", "end"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_DURATION = re.compile(r"(?<![\w:])(\d+(ms|[smhdwy]))+(?![\w:])")
_NUMBER = re.compile(r"(?<![\w:])(0x[0-9a-fA-F]+|\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)(?![\w:])")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: no function, keyword, label name, string or duration."""
    text = _STRING.sub(" ", expr)  # label values, regexes (and any Grafana variable inside them)
    text = _GRAFANA_VAR.sub(" ", text)  # $__rate_interval, ${datasource}
    text = _BRACES.sub(" ", text)  # label matchers: only label names left in them
    text = _BRACKETS.sub(" ", text)  # ranges and subqueries: durations
    text = _LABEL_LIST.sub(" ", text)  # by (le), on (job_id): label names
    text = _DURATION.sub(" ", text)  # offset 5m
    text = _NUMBER.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(0)
        rest = text[m.end() :].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):  # a keyword, or a function / aggregation call
            continue
        names.add(word)
    return names


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    def walk(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["expr"]] if isinstance(node.get("expr"), str) else []
            if node.get("type") == "query" and isinstance(node.get("definition"), str):
                found.append(node["definition"].removeprefix("label_values(").rsplit(",", 1)[0])
            return found + [e for v in node.values() for e in walk(v)]
        if isinstance(node, list):
            return [e for v in node for e in walk(v)]
        return []

    return walk(json.loads(DASHBOARD.read_text()))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (result) (rate(a_total{result="failed", job=~"x|y"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(b_bucket[5m])))", {"b_bucket"}),
        ("max by (database) (c) / on (database) group_left (d) max without (instance) (e) > 0.8", {"c", "e"}),
        ('time() - f{command=~"run|worker"} > 3e2 unless g offset 5m', {"f", "g"}),
        ("absent(h{x='1'}) or vector(1) and i:recorded:rate5m[30m:1m] == bool 1", {"h", "i:recorded:rate5m"}),
        ('increase(j[1h30m]) >= 100 and up{job="w"} == 0', {"j", "up"}),
        ('label_replace(k, "a", "$1", "b", "(.*)")', {"k"}),
    ],
)
def test_the_tokenizer_finds_only_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def emitted_names(dsn: str, tmp_path: Path) -> set[str]:
    """Sample names of a real run's .prom file and of a real worker's /metrics (with failures, queue rows)."""
    insert_snapshots(dsn, 60, bad_every=10)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO queue_jobs (type, run_after) VALUES ('other', now() - interval '1 minute')")
    prom = tmp_path / "run.prom"
    res = cli("--dsn", dsn, "--metrics-file", str(prom), "run", "--from", FROM, "--to", TO, "--force", "--reason", "t")
    assert res.exit_code == 1, res.output  # 10% failed on purpose: over the 1% error budget, exit 1
    names = _names(prom.read_text())

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO queue_jobs (type, payload) VALUES ('backfill_range', %s)",
            [psycopg.types.json.Jsonb({"from_created_at": FROM, "to_created_at": TO, "reprocess": True})],
        )
    proc = start_cli(["--dsn", dsn, "worker", "--metrics-port", "0", "--poll", "0.2"], cwd=tmp_path)
    try:
        assert proc.stderr is not None
        url = next(
            (m.group(1) for line in proc.stderr if (m := re.search(r"metrics on (http://[\d.:]+/metrics)", line))), None
        )
        assert url, "the worker did not say where its metrics are"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())

        wait_for(
            lambda: 'starforge_etl_snapshots_processed_total{result="applied"} 54.0' in scrape(), what="the worker"
        )
        names |= _names(scrape())
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    return names


def test_every_metric_the_rules_and_the_dashboard_reference_is_emitted(pg_dsn: str, tmp_path: Path) -> None:
    emitted = emitted_names(pg_dsn, tmp_path)
    referenced = {
        "alerts.yml": {n for e in rule_exprs() for n in metric_names(e)},
        "backfill.json": {n for e in dashboard_exprs() for n in metric_names(e)},
    }
    for where, names in referenced.items():
        assert len(names) >= 10, f"{where}: the tokenizer found too few names ({sorted(names)})"
        unknown = sorted(names - emitted - SYNTHESIZED)
        assert not unknown, f"{where} references metrics the exporter does not emit: {unknown}"
    # and a misspelt name would be caught
    assert metric_names("rate(starforge_etl_snapshots_procesed_total[5m])") - emitted
