"""Real topologies for the tests: a PgBouncer in front of a server, and a streaming standby of a primary.

Both are the machine's own programs (Debian's `pgbouncer`, PostgreSQL's `pg_basebackup`/`pg_ctl`), run as
the `postgres` OS user when we are root (they refuse root or should not run as it), on free 127.0.0.1 ports,
in directories under /tmp that the `postgres` user can reach. A missing program raises: a test that needs
one fails rather than skips (.ci/run installs pgbouncer when it is missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from starforge_backfill.embedded import EmbeddedPostgres, _system_bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> dict[str, Any]:
    """subprocess keyword arguments that drop to the `postgres` OS user when we are root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _workdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    run_as = _run_as()
    if run_as:
        os.chown(path, run_as["user"], run_as["group"])
    return path


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


class PgBouncer:
    """Debian's pgbouncer on a free port in front of `server_dsn`'s host and port, every database passed
    through (`* = ...`), trust auth for the `postgres` role."""

    def __init__(self, server_dsn: str, pool_mode: str, pool_size: int = 2) -> None:
        exe = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
        if exe is None:
            raise RuntimeError(
                "pgbouncer is not installed: apt-get install -y --no-install-recommends pgbouncer (.ci/run does)"
            )
        self.exe = exe
        info = conninfo_to_dict(server_dsn)
        self.server_host = str(info.get("host") or "127.0.0.1")
        self.server_port = int(info.get("port") or 5432)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = _workdir("starforge-pgb-")
        self.ini = self.dir / "pgbouncer.ini"
        self.pidfile = self.dir / "pgbouncer.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    def dsn(self, dbname: str) -> str:
        return make_conninfo("", host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)

    def start(self) -> PgBouncer:
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        self.ini.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\n"
            "ignore_startup_parameters = extra_float_digits,options,application_name\n"
            "server_reset_query = DISCARD ALL\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.pidfile}\n"
        )
        for path in self.dir.iterdir():
            run_as = _run_as()
            if run_as:
                os.chown(path, run_as["user"], run_as["group"])
        self.proc = subprocess.Popen(
            [self.exe, str(self.ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_run_as(),
        )
        try:
            wait_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"pgbouncer did not start: {self.log_tail()}") from None
        return self

    def log_tail(self) -> str:
        log = self.dir / "pgbouncer.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    def kill(self) -> None:
        """Stop it at once (SIGINT: every client and server connection is cut)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """A hard restart on the same port: connections cut, `down_s` seconds away, then back."""
        self.kill()
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def server_pids(self, dbname: str, admin_dsn: str) -> int:
        """How many server connections the server holds for `dbname` (to see pooling at work)."""
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname]).fetchone()
        return int(row[0]) if row else 0


class Standby:
    """A streaming standby of `primary` (an EmbeddedPostgres started with the system launcher), made with
    `pg_basebackup -R -X stream`, replaying `apply_delay` behind."""

    def __init__(self, primary: EmbeddedPostgres, apply_delay: str = "0") -> None:
        bindir = _system_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries (pg_basebackup, pg_ctl) on this machine")
        self.bindir = bindir
        self.primary = primary
        self.apply_delay = apply_delay
        self.port = free_port()
        self.root = _workdir("starforge-standby-")
        self.data = self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, prog: str, *args: str) -> None:
        with tempfile.TemporaryFile("w+") as out:  # a pipe could be held open by the postmaster
            proc = subprocess.run(
                [str(self.bindir / prog), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                timeout=120,
                **_run_as(),
            )
            out.seek(0)
            if proc.returncode != 0:
                raise RuntimeError(f"{prog} failed (exit {proc.returncode}): {out.read()[-1500:]}")

    def start(self) -> Standby:
        info = conninfo_to_dict(self.primary.dsn)
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(info["port"]), "-U", "postgres",
            "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"recovery_min_apply_delay = '{self.apply_delay}'\n")
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories= -c fsync=off"
            " -c hot_standby=on -c wal_receiver_status_interval=1s -c max_connections=200"  # >= the primary's
        )
        log = self.root / "server.log"
        try:
            self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nstandby log: {log.read_text(errors='replace')[-1500:]}") from None
        return self

    def set_apply_delay(self, value: str) -> None:
        """ALTER SYSTEM SET recovery_min_apply_delay on the standby, and reload. On a loaded machine the
        replay backlog can pass max_standby_streaming_delay, and the standby then cancels this statement
        ("conflict with recovery"): it is asked again, a few times."""
        for attempt in range(5):
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(
                        psycopg.sql.SQL("ALTER SYSTEM SET recovery_min_apply_delay = {}").format(
                            psycopg.sql.Literal(value)
                        )
                    )
                    conn.execute("SELECT pg_reload_conf()")
                return
            except psycopg.errors.SerializationFailure:
                if attempt == 4:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
