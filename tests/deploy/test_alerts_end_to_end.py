"""The rules on real data: a real worker exports the database's figures, a real Prometheus scrapes it every second
and evaluates alerts.yml. A failed job fires BackfillJobFailed, an old queue row makes BackfillQueueJobStale
pending, nothing else is active, and both clear once the database says otherwise."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from deploy_support import StartPrometheus
from opx_support import start_cli, wait_for

from starforge_backfill.monitoring import alert_rules_file


def active_alerts(url: str) -> set[tuple[str, str, str]]:
    """{(alertname, job_id or type, state)} of the alerts Prometheus has pending or firing."""
    with urllib.request.urlopen(url + "/api/v1/alerts", timeout=5) as resp:
        alerts: list[dict[str, Any]] = json.load(resp)["data"]["alerts"]
    return {
        (a["labels"]["alertname"], a["labels"].get("job_id") or a["labels"].get("type") or "", a["state"])
        for a in alerts
    }


def query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5) as resp:
        return list(json.load(resp)["data"]["result"])


def test_alerts_fire_and_clear_on_a_real_worker_scraped_by_a_real_prometheus(
    pg_dsn: str, tmp_path: Path, start_prometheus: StartPrometheus
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO backfill_jobs (job_id, batch_size, status) VALUES ('j-failed', 100, 'failed')")
        conn.execute("INSERT INTO queue_jobs (type, run_after) VALUES ('other', now() - interval '1 hour')")
    worker = start_cli(
        ["--dsn", pg_dsn, "worker", "--metrics-port", "0", "--poll", "0.2"],
        cwd=tmp_path,
        STARFORGE_METRICS_DB_EVERY="0.3",
    )
    try:
        assert worker.stderr is not None
        target = next(
            (m.group(1) for line in worker.stderr if (m := re.search(r"metrics on http://([\d.:]+)/metrics", line))),
            None,
        )
        assert target, "the worker did not say where its metrics are"
        url = start_prometheus([alert_rules_file()], scrape=[target])

        expected = {("BackfillJobFailed", "j-failed", "firing"), ("BackfillQueueJobStale", "other", "pending")}
        wait_for(lambda: active_alerts(url) == expected, timeout=60, what=f"alerts {expected}")
        ratio = query(
            url,
            "max by (database) (starforge_backfill_db_connections)"
            " / max by (database) (starforge_backfill_db_max_connections)",
        )
        assert len(ratio) == 1 and 0 < float(ratio[0]["value"][1]) < 0.8 and ratio[0]["metric"]["database"]
        assert query(url, 'up{job="starforge-backfill-worker"} == 1'), "the worker is not scraped"

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE backfill_jobs SET status = 'done' WHERE job_id = 'j-failed'")
            conn.execute("DELETE FROM queue_jobs WHERE type = 'other'")
        wait_for(lambda: active_alerts(url) == set(), timeout=60, what="the alerts to clear")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert worker.returncode == 0
