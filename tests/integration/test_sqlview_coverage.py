"""`run --print-sql` lists by hand what a run executes: a run must execute no ETL or job statement it leaves out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_state import load_corpus
from running import run_job

from starforge_backfill import sqlview, templates
from starforge_backfill.config import load_config

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"


@pytest.mark.parametrize("policy", ["placeholder", "fail"])
def test_every_statement_a_batch_runs_is_listed_by_print_sql(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    load_corpus(pg_dsn)  # 2% malformed snapshots: the reference path and record_error run too
    cfg = load_config(
        None,
        env={},
        overrides={
            "database.dsn": pg_dsn,
            "artifacts_dir": str(tmp_path),
            "etl.catalog_policy": policy,
            "etl.batch_size": 50,
            "throttle.failure_rate_max": 0.5,
        },
    )
    seen: set[str] = set()
    real = templates.render

    def recording(name: str, **context: Any) -> str:
        seen.add(name)
        return real(name, **context)

    monkeypatch.setattr(templates, "render", recording)
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, force=True, reason="coverage")
    assert res.outcome == "done" and res.totals.failed > 0
    listed = {st.name.split("[")[0] for st in sqlview.run_statements(cfg, forced=True)}
    batch = {n for n in seen if n.startswith(("etl/", "events/"))} | {
        n for n in seen if n in {"jobs/next_batch.sql", "jobs/claim_chunk.sql", "jobs/checkpoint.sql"}
    }
    assert batch, seen
    assert {"etl/events.sql", "etl/events_lock.sql", "events/prune.sql"} <= seen  # events on by default
    assert batch <= listed, f"executed but not shown by run --print-sql: {sorted(batch - listed)}"


def test_a_listed_statement_that_does_not_exist_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(None, env={}, overrides={"database.dsn": "host=localhost"})
    monkeypatch.setattr(templates, "template_names", lambda: ["jobs/find_resumable.sql"])
    with pytest.raises(RuntimeError, match=r"lists jobs/create_job\.sql, which is not a template"):
        sqlview.run_statements(cfg, forced=True)
