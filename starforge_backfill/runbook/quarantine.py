"""`quarantine push`: upload a job's quarantine copies that are still local only (an unreachable S3 during the
run, a run that ended before its uploads, a job run before `quarantine.s3_url` was set) and record them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from starforge_backfill import jobs, quarantine_s3
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.schema import check_schema


@dataclasses.dataclass
class PushResult:
    """What `quarantine push` uploaded and what stays local only."""

    job_id: str
    s3_url: str
    tally: quarantine_s3.Tally

    @property
    def exit_code(self) -> ExitCode:
        """0 when every copy is in S3, 1 when some stay local only."""
        return ExitCode.CHECK_FAILED if self.tally.local_only else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """docs/JSON.md, `quarantine push`."""
        return {"job_id": self.job_id, "s3_url": self.s3_url, **self.tally.to_json()}


def push(cfg: Config, *, job_id: str) -> PushResult:
    """Upload job `job_id`'s local-only quarantine copies to `quarantine.s3_url`."""
    s3 = config_settings.quarantine_s3(cfg)
    if s3 is None:
        raise UsageError(
            "quarantine.s3_url is not set: there is nowhere to push to",
            hint="set quarantine.s3_url (s3://bucket/prefix) in the config file",
        )
    client = quarantine_s3.make_client(s3)
    folder = Path(cfg.artifacts_dir) / job_id / "quarantine"
    if job_id == "realtime":  # the queue worker's real-time snapshots
        folder = Path(cfg.artifacts_dir) / "realtime" / "quarantine"
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        if job_id != "realtime" and jobs.get_job(conn, job_id) is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
        tally = quarantine_s3.push(conn, s3, job_id, folder, client=client)
    return PushResult(job_id, s3.url, tally)
