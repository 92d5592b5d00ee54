"""`demo`: the whole runbook, end to end, with the real commands, on an embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled
from starforge_backfill.errors import ExitCode, GateFailed

RANGE = ("2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z")


class Session:
    """Runs `starforge-backfill` commands like an operator would, and shows them."""

    def __init__(self, dsn: str, artifacts: Path, config: Path, console: Any) -> None:
        self.dsn = dsn
        self.artifacts = artifacts
        self.config = config
        self.console = console
        self.steps: list[tuple[str, int, float]] = []

    def base(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "starforge_backfill",
            "-c",
            str(self.config),
            "--dsn",
            self.dsn,
            "--artifacts-dir",
            str(self.artifacts),
            "--metrics-file",
            str(self.artifacts / "starforge.prom"),
        ]

    def show(self, args: list[str]) -> None:
        shown = " ".join(shlex.quote(a) for a in args)
        self.console.print(f"\n[bold cyan]$ starforge-backfill {shown}[/]", soft_wrap=True)

    def run(self, step: str, *args: str, expect: tuple[int, ...] = (0,), quiet_json: bool = False) -> Any:
        """Run one command, echo its output, check its exit code; returns parsed --json output if asked."""
        self.show(list(args))
        started = time.monotonic()
        cmd = self.base() + (["--json"] if quiet_json else []) + list(args)
        # one pipe for both streams (unbuffered): progress (stderr) and results (stdout) in the order written
        err = subprocess.PIPE if quiet_json else subprocess.STDOUT
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=_env())
        elapsed = time.monotonic() - started
        self.echo(proc.stderr if quiet_json else proc.stdout)
        self.steps.append((step, proc.returncode, elapsed))
        if proc.returncode not in expect:
            raise GateFailed(f"demo step `{step}` exited {proc.returncode} (expected {expect})")
        if quiet_json:
            data = json.loads(proc.stdout)
            self.console.print(f"  [dim](--json: {len(proc.stdout)} bytes)[/]")
            return data
        return None

    def echo(self, output: str | None) -> None:
        """A command's output, indented, each line whole (never wrapped at the console's width)."""
        for line in (output or "").splitlines():
            self.console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a long command in the background (its output is shown when it ends)."""
        self.show(list(args))
        return subprocess.Popen(
            self.base() + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
        )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("STARFORGE_PROGRESS_EVERY", "5")
    env.setdefault("COLUMNS", "110")
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr share the demo's pipe: each line as it is written
    return env


def _status(session: Session, job_id: str) -> dict[str, Any]:
    cmd = [*session.base(), "--json", "status", "--job-id", job_id]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True).stdout
    return json.loads(out)["jobs"][0]


def _newest_job(session: Session, mode: str) -> str:
    cmd = [*session.base(), "--json", "status", "--limit", "50"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True).stdout
    for job in json.loads(out)["jobs"]:
        if job.get("mode") == mode:
            return str(job["job_id"])
    raise GateFailed(f"no {mode} job found")


def _watch_and_pause(session: Session, proc: subprocess.Popen[str], pause_at: float) -> str | None:
    """Watch the run's job row directly (cheap, fast) and pause it once it passed `pause_at`."""
    import psycopg

    from starforge_backfill import jobs

    deadline = time.monotonic() + 600
    job_id = None
    with psycopg.connect(session.dsn, autocommit=True) as conn:
        while proc.poll() is None and time.monotonic() < deadline:
            row = jobs.newest_progress(conn, "run")
            if row is not None and row[2] and row[1] / row[2] >= pause_at:
                job_id = row[0]
                session.run("pause", "pause", "--job-id", job_id, "--reason", "demo: operator pause", expect=(0, 1))
                break
            time.sleep(0.1)
    return job_id


def walk_runbook(session: Session, fingerprint12: str, pause_at: float = 0.35) -> dict[str, Any]:
    """Every runbook step in order, as an operator would type them."""
    f, t = RANGE
    session.run("census", "census", "--from", f, "--to", t)
    session.run("sample", "sample", "--from", f, "--to", t, "--seed", "7")
    # <artifacts>/runbook/<db slug>/<fp12>/sample.json: the newest sample of the demo's one database
    sample = next((session.artifacts / "runbook").glob(f"*/{fingerprint12}/sample.json"))
    session.run("dry-run", "dry-run", "--sample", str(sample))
    session.run("plan", "plan", "--from", f, "--to", t, "--concurrency", "2")
    session.run(
        "preflight",
        "preflight",
        "--from",
        f,
        "--to",
        t,
        "--backup-id",
        "demo-backup-0001",
        "--approved-by",
        "engineering:demo-eng",
        "--approved-by",
        "sre:demo-sre",
        "--attest",
        "communication",
        "--concurrency",
        "2",
    )
    session.run("canary", "canary", "--from", f, "--to", t, "--users", "15", "--observe", "5s")
    proc = session.popen("run", "--from", f, "--to", t, "--concurrency", "2")
    job_id = _watch_and_pause(session, proc, pause_at)
    out, _ = proc.communicate()
    if job_id is not None:  # the pause's output came first: say whose output follows
        session.console.print("\n  [dim](the run's own output, from its start)[/]")
    session.echo(out)
    session.console.print(f"  [dim](run exited {proc.returncode})[/]")
    session.steps.append(("run", proc.returncode, 0.0))
    job_id = job_id or _newest_job(session, "run")
    if proc.returncode == 0:
        session.console.print("  [dim](the run finished before the pause landed: a small corpus is quick)[/]")
    if proc.returncode == int(ExitCode.PAUSED):
        session.run("status", "status", "--job-id", job_id)
        session.run("resume", "resume", "--job-id", job_id, "--concurrency", "2")
    elif proc.returncode != 0:
        raise GateFailed(f"demo step `run` exited {proc.returncode}")
    session.run("status", "status", "--job-id", job_id)
    session.run("events tail", "events", "tail", "--job-id", job_id, "--limit", "5")  # the ETL's events
    session.run("verify", "verify", "--job-id", job_id)
    session.run("report", "report", "--job-id", job_id)
    return _status(session, job_id)


def recovery_path(session: Session, main_job: str, workdir: Path) -> None:
    """The runbook's recovery path (section 13): a backfill under catalog policy `fail` whose snapshots use a
    troop the catalog lacks -> FK_VIOLATION -> catalog import -> reprocess --error-type FK_VIOLATION ->
    verify --full -> finalize; then the main job is finalized too."""
    from starforge_backfill import demo

    fail_config = workdir / "starforge-backfill-policy-fail.yaml"
    fail_config.write_text(demo.recovery_config(session.config.read_text()))
    strict = Session(session.dsn, session.artifacts, fail_config, session.console)
    strict.steps = session.steps
    copies, late = demo.seed_recovery(session.dsn)
    session.console.print(
        f"\n[bold]recovery path[/]: {copies} newer snapshots in {demo.RECOVERY_RANGE[0][:10]}, {late} using troop "
        f"{demo.LATE_TROOP} (not in the catalog), run under catalog policy fail ({fail_config.name})"
    )
    f, t = demo.RECOVERY_RANGE
    strict.run("policy fail", "run", "--from", f, "--to", t, "--force", "--reason", "demo: policy fail")
    fail_job = _newest_job(session, "run")
    catalog = workdir / "catalog-late.csv"
    catalog.write_text(f"kind,id,name\ntroop,{demo.LATE_TROOP},Late Troop\n")
    strict.run("catalog import", "catalog", "import", str(catalog))
    strict.run("reprocess", "reprocess", "--error-type", "FK_VIOLATION", "--force", "--reason", "demo: catalog landed")
    strict.run("verify --full", "verify", "--job-id", fail_job, "--full", "--sample-users", "5")
    strict.run("finalize", "finalize", "--job-id", fail_job, "--sample-users", "0")
    session.run("finalize", "finalize", "--job-id", main_job)


@click.command("demo")
@click.option(
    "--snapshots",
    type=click.IntRange(20, 1_000_000),
    default=2000,
    show_default=True,
    help="How many synthetic snapshots to generate.",
)
@click.option("--keep-server", is_flag=True, help="Leave the embedded server running and print its DSN.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Where the demo keeps its config and artifacts.",
)
@click.pass_obj
@handled
def command(obj: Ctx, snapshots: int, keep_server: bool, workdir: Path) -> None:
    """The whole runbook end to end on an embedded PostgreSQL with synthetic snapshots.

    With the global --dsn, a new database is created on that server instead (nothing existing is touched).
    """
    from rich.console import Console
    from rich.panel import Panel

    from starforge_backfill import demo
    from starforge_backfill.config import load_config

    # a log (not a terminal) gets every line whole: no wrap at the default 80 columns
    console = Console(stderr=obj.json, soft_wrap=True)
    started = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "starforge-backfill.yaml"
    config_path.write_text(demo.DEMO_CONFIG)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    artifacts = Path(obj.opts.get("artifacts_dir") or workdir / f"artifacts-{stamp}").resolve()
    console.rule("[bold]starforge-backfill demo")
    console.print("starting an embedded PostgreSQL…" if not obj.opts.get("dsn") else "using the given server…")
    # The server lives under /tmp (initdb runs as the postgres user when we are root: it cannot enter /root).
    db = demo.open_database(obj.opts.get("dsn"), keep_server=keep_server)
    try:
        console.print(f"database: [bold]{db.created_db}[/] ({'embedded' if db.server else 'given server'})")
        session = Session(db.dsn, artifacts, config_path, console)
        session.run("db init", "db", "init")
        console.print(f"\ngenerating {snapshots} synthetic snapshots (~1% malformed, a few 2-3 MB, catalog gaps)…")
        _spec, stats = demo.seed(db.dsn, snapshots)
        console.print(f"  loaded {stats.snapshots} snapshots, {stats.bytes / 1e6:.1f} MB of JSON")
        cfg = load_config(config_path, overrides={"database.dsn": db.dsn})
        final = walk_runbook(session, cfg.fingerprint()[:12])
        recovery_path(session, final["job_id"], workdir)
        final = _status(session, final["job_id"])
        report = artifacts / final["job_id"] / "report.html"
        elapsed = time.monotonic() - started
        lines = [
            f"job            {final['job_id']}  ({final['status']})",
            f"processed      {final['processed_count']}   failed {final['error_count']}",
            f"steps          {len(session.steps)} commands, all as expected",
            f"report         {report}",
            f"artifacts      {artifacts}",
            f"elapsed        {elapsed:.0f} s",
        ]
        if keep_server and db.server is not None:
            lines.append(f"server (kept)  psql '{db.dsn}'")
            if db.server.pgdata is not None:
                lines.append(f"stop it with   kill -INT $(head -1 {db.server.pgdata}/postmaster.pid)")
        panel = Panel("\n".join(lines), title="demo finished", expand=False)
        if console.is_terminal:
            console.print(panel)
        else:  # a log: the box as wide as its longest line (print(width=) cannot exceed the console's 80)
            Console(file=console.file, width=max(len(line) for line in lines) + 4).print(panel)
        obj.emit(
            {
                "job": final,
                "report": str(report),
                "artifacts": str(artifacts),
                "elapsed_s": round(elapsed, 1),
                "dsn": db.dsn if keep_server else None,
                "pgdata": str(db.server.pgdata) if keep_server and db.server and db.server.pgdata else None,
                "steps": [list(s) for s in session.steps],
            },
            lambda: None,
        )
    finally:
        db.close(keep_server=keep_server)
