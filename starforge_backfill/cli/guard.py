"""`guard set KEY=VALUE ... --job-id J`: change the production guard's thresholds on a running job."""

from __future__ import annotations

import click

from starforge_backfill.cli.context import CONTEXT_SETTINGS, Ctx, handled


@click.group("guard", context_settings=CONTEXT_SETTINGS)
def group() -> None:
    """The production guard of a running job (docs/DESIGN.md "The production guard")."""


@group.command("set")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--job-id", required=True, help="The job whose thresholds change.")
@click.pass_obj
@handled
def set_command(obj: Ctx, assignments: tuple[str, ...], job_id: str) -> None:
    """Set guard thresholds (the config's `throttle` keys, e.g. probe_latency_ratio_max=2 hold_recover=30s) on
    a job; its workers on every host pick them up within a few seconds. Recorded as a `guard_set` event."""
    from starforge_backfill.runbook.guard import set_thresholds

    res = set_thresholds(obj.config(), job_id=job_id, assignments=list(assignments))

    def human() -> None:
        for key, value in res.overrides.items():
            click.echo(f"job {res.job_id}: {key} = {value!r}")

    obj.emit(res.to_json(), human)
