"""`canary`: backfill a narrow slice at concurrency 1-4, observe the database, pass or fail (exit 1)."""

from __future__ import annotations

import sys
from typing import Any

import click

from starforge_backfill.cli.context import BATCH_SIZE_HELP, BatchSize, Ctx, handled


def _duration(value: str | None, option: str) -> float | None:
    from starforge_backfill.config import parse_duration
    from starforge_backfill.errors import UsageError

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


@click.command("canary")
@click.option("--namecodes", metavar="A,B,...", help="Backfill exactly these users (comma-separated namecodes).")
@click.option("--users", type=int, metavar="N", help="Pick N users deterministically [default: canary.users].")
@click.option("--recent", metavar="DURATION", help="Pick users from the newest DURATION of the backlog (e.g. 7d).")
@click.option("--from", "from_ts", help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", help="End of the created_at range (exclusive, ISO-8601).")
@click.option("--observe", metavar="DURATION", help="Observation window after the slice [default: canary.observe].")
@click.option("--concurrency", type=int, help="Workers, 1 to 4 [default: canary.concurrency].")
@click.option("--batch-size", type=BatchSize(), help=BATCH_SIZE_HELP)
@click.pass_obj
@handled
def command(obj: Ctx, **kw: Any) -> None:
    """Canary: backfill a narrow slice (namecodes, N users, or the newest DURATION of the backlog) at
    concurrency 1-4, watch failure rate, connections, long transactions, replica lag and batch latency
    during the slice and an observation window, then pass or fail against the throttle thresholds.

    Writes canary.json in the canary job's folder and records the `canary` gate that `run` requires.
    Exits 1 when the canary fails, 130 when interrupted.
    """
    from starforge_backfill.cli.console import ProgressReporter
    from starforge_backfill.runbook.canary import canary

    namecodes = kw["namecodes"].split(",") if kw["namecodes"] is not None else None
    reporter = ProgressReporter(enabled=obj.verbose >= 0)
    try:
        res = canary(
            obj.config(),
            namecodes=namecodes,
            users=kw["users"],
            recent_s=_duration(kw["recent"], "--recent"),
            from_ts=kw["from_ts"],
            to_ts=kw["to_ts"],
            observe_s=_duration(kw["observe"], "--observe"),
            concurrency=kw["concurrency"],
            batch_size=kw["batch_size"],
            notify=obj.say,
            progress=reporter.update,
            after_run=reporter.close,
        )
    finally:
        reporter.close()

    def human() -> None:
        from starforge_backfill.cli.console import result_label

        sel, job = res.selection, res.job
        verdict = {"passed": "PASSED", "failed": "FAILED", "interrupted": "INTERRUPTED"}[res.outcome]
        click.echo(f"canary {job['job_id']}: {verdict}")
        names = ", ".join(sel.namecodes[:5]) + (f" (+{len(sel.namecodes) - 5} more)" if len(sel.namecodes) > 5 else "")
        click.echo(
            f"  slice: {len(sel.namecodes)} user(s) by {sel.how} in [{sel.from_ts.isoformat()}, "
            f"{sel.to_ts.isoformat()}): {names}"
        )
        by_type = ", ".join(f"{k} {v}" for k, v in sorted((job.get("errors_by_type") or {}).items()))
        click.echo(
            f"  job {job['status']}: {job['processed_count']} processed, {job['error_count']} failed"
            f"{f' ({by_type})' if by_type else ''}; concurrency {res.concurrency}; observed {res.observed_s:g}s "
            f"({len(res.samples)} readings)"
        )
        for c in res.checks:
            click.echo(f"  {result_label('pass' if c.passed else 'FAIL', 5)} {c.name:<18} {c.detail}")
        for w in res.warnings:
            click.echo(f"  warning: {w}")
        if res.outcome == "interrupted":
            click.echo("  interrupted: no verdict recorded (the gate is unchanged); run the canary again")
        gate = f"; gate canary recorded for config {res.fingerprint[:12]}" if res.gate_recorded else ""
        click.echo(f"  artifact {res.artifact}{gate}")

    obj.emit(res.to_json(), human)
    if res.exit_code:
        sys.exit(int(res.exit_code))
