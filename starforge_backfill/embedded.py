"""A throwaway PostgreSQL server for tests and `starforge-backfill demo`.

`EmbeddedPostgres` runs the machine's own PostgreSQL binaries (`initdb` + `pg_ctl`, as the `postgres` OS
user when we are root, since both refuse root) on a free 127.0.0.1 port with trust auth and durability off.
When no system binaries exist it falls back to the `pgserver` wheel (extra `embedded`), which bundles
PostgreSQL and serves on a unix socket only, so its DSN carries `?host=<socket dir>` instead of a port.
`STARFORGE_EMBEDDED_BACKEND=system|pgserver` forces one launcher. Only the stdlib is imported up front.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from starforge_backfill.errors import DatabaseUnavailable

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_FAST = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
_SERVER_OPTIONS = " ".join(f"-c {k}={v}" for k, v in _FAST.items()) + " -c max_connections=200"


def find_server() -> str | None:
    """DSN of an already-reachable server: $STARFORGE_TEST_DSN, else the local 5432 one, else None.

    `STARFORGE_TEST_NO_LOCAL=1` skips probing 127.0.0.1:5432 (to exercise the embedded path).
    """
    given = os.environ.get("STARFORGE_TEST_DSN", "").strip()
    if given:
        return given
    if os.environ.get("STARFORGE_TEST_NO_LOCAL", "").strip() not in ("", "0"):
        return None
    import psycopg  # lazily: keep this module light

    try:
        with psycopg.connect(LOCAL_DSN, connect_timeout=2):
            return LOCAL_DSN
    except psycopg.Error:
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_bindir() -> Path | None:
    """Where initdb/pg_ctl live: pg_config --bindir, else the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: _version_key(Path(p).parent.name))[::-1]]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


class EmbeddedPostgres:
    """A private PostgreSQL server: `start()` returns its DSN, `stop()` stops it (and deletes a temp dir).

    `data_dir` is the PGDATA directory (initialized when empty, reused when it holds a cluster); by default
    a temporary one under /tmp is created and removed on stop. `port` defaults to a free one (system
    launcher only; pgserver listens on a unix socket).
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._port = port
        self._tmp_root: Path | None = None
        self._run_as: dict[str, Any] = {}
        self._bindir: Path | None = None
        self._pgdata: Path | None = None  # set once a system server may be running in it
        self._opts = ""  # the system server's command-line options (port, settings), to start it again
        self._pgserver: Any = None
        self._dsn: str | None = None

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise DatabaseUnavailable("the embedded PostgreSQL server is not running (call start() first)")
        return self._dsn

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        if self._dsn is not None:
            return self._dsn
        backend = os.environ.get("STARFORGE_EMBEDDED_BACKEND", "").strip().lower()
        if backend not in ("", "system", "pgserver"):
            raise DatabaseUnavailable(f"STARFORGE_EMBEDDED_BACKEND={backend!r}: use 'system' or 'pgserver'")
        atexit.register(self.stop)  # safety net, also while starting
        errors: list[str] = []
        bindir = _system_bindir() if backend != "pgserver" else None
        if bindir is None and backend != "pgserver":
            errors.append("no PostgreSQL binaries (pg_config, /usr/lib/postgresql/*/bin, initdb on PATH)")
        launchers = [lambda: self._start_system(bindir)] if bindir is not None else []
        launchers += [self._start_pgserver] if backend != "system" else []
        for launch in launchers:
            try:
                self._dsn = launch()
                return self._dsn
            except DatabaseUnavailable as exc:
                self._teardown()
                errors.append(str(exc))
        atexit.unregister(self.stop)
        raise DatabaseUnavailable("cannot start an embedded PostgreSQL: " + "; ".join(errors))

    def _workdir(self) -> Path:
        """The PGDATA path; when none was given, a fresh /tmp/starforge-pg-XXXX owned by the server user."""
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            return self._data_dir
        parent = "/tmp" if os.geteuid() == 0 else None  # not a 0700 $TMPDIR: the postgres user must reach it
        self._tmp_root = Path(tempfile.mkdtemp(prefix="starforge-pg-", dir=parent))
        return self._tmp_root / "data"

    def _start_system(self, bindir: Path) -> str:
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise DatabaseUnavailable("running as root and there is no 'postgres' OS user") from None
            self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self._bindir = bindir
        data = self._workdir()
        for path in (self._tmp_root, data if data.exists() else None):
            if path is not None and self._run_as:
                os.chown(path, self._run_as["user"], self._run_as["group"])
        if not (data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(data), *"-U postgres -A trust -E UTF8 --no-locale --no-sync".split())
        log = data / "server.log"
        for attempt in range(3):
            port = self._port or _free_port()
            socket_dir = str(data) if len(f"{data}/.s.PGSQL.{port}") < 100 else ""
            opts = f"-c listen_addresses=127.0.0.1 -p {port} {_SERVER_OPTIONS} -c unix_socket_directories="
            opts += shlex.quote(socket_dir)
            self._pgdata = data
            self._opts = opts
            try:
                self._run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start")
                return f"postgresql://postgres@127.0.0.1:{port}/postgres"
            except DatabaseUnavailable as exc:
                server_log = log.read_text(errors="replace") if log.exists() else ""
                if self._port or attempt == 2 or "could not bind" not in server_log:
                    raise DatabaseUnavailable(f"{exc} (server log {log}: {_tail(server_log)})") from None
        raise AssertionError("unreachable")

    def _run(self, prog: str, *args: str) -> None:
        assert self._bindir is not None
        cwd = self._tmp_root or self._data_dir
        with tempfile.TemporaryFile("w+") as out:  # a pipe could be held open by the postmaster
            try:
                proc = subprocess.run(
                    [str(self._bindir / prog), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    timeout=120,
                    **self._run_as,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise DatabaseUnavailable(f"{prog} failed: {exc}") from None
            out.seek(0)
            if proc.returncode != 0:
                raise DatabaseUnavailable(f"{prog} failed (exit {proc.returncode}): {_tail(out.read())}")

    def _start_pgserver(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            try:
                import pgserver
            except ImportError:
                raise DatabaseUnavailable(
                    "the pgserver fallback is not installed (pip install 'starforge-backfill[embedded]')"
                ) from None
            data = self._workdir()
            try:
                self._pgserver = pgserver.get_server(data, cleanup_mode="stop")
                dsn = self._pgserver.get_uri("postgres")
            except Exception as exc:  # pgserver raises assorted errors (CalledProcessError, AssertionError)
                raise DatabaseUnavailable(f"pgserver failed: {type(exc).__name__}: {exc}") from None
        import psycopg  # pgserver fixes the command line: apply the durability-off settings afterwards
        from psycopg import sql

        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for name, value in _FAST.items():
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                conn.execute("SELECT pg_reload_conf()")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"pgserver started but cannot be configured: {exc}") from None
        return dsn

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> None:
        """Restart the running server in place (same data, port and options), as `pg_ctl restart -m MODE`
        does; every open connection is cut. With `down_s`, the server stays stopped that long before it
        starts again (an outage of a few seconds). For tests of surviving a database restart (system
        launcher only)."""
        if self._dsn is None:
            raise DatabaseUnavailable("the embedded PostgreSQL server is not running (call start() first)")
        if self._pgdata is None:
            raise DatabaseUnavailable("restart() needs the system launcher (pgserver manages its own server)")
        data = self._pgdata
        log = data / "server.log"
        if down_s <= 0:
            self._run("pg_ctl", "-D", str(data), "-l", str(log), "-m", mode, "-w", "-t", "60", "restart")
            return
        self._run("pg_ctl", "-D", str(data), "-m", mode, "-w", "-t", "60", "stop")
        time.sleep(down_s)
        self._run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", self._opts, "start")

    @property
    def pgdata(self) -> Path | None:
        """The running server's data directory (system launcher), if known."""
        return self._pgdata

    def detach(self) -> str:
        """Leave the server running after this process exits (`demo --keep-server`); returns its DSN."""
        atexit.unregister(self.stop)
        return self.dsn

    def stop(self) -> None:
        """Stop the server (idempotent); remove the data dir if it was a temporary one."""
        atexit.unregister(self.stop)
        self._teardown()

    def _teardown(self) -> None:
        if self._pgserver is not None:
            with contextlib.suppress(Exception):
                self._pgserver.cleanup()
            self._pgserver = None
        data, self._pgdata = self._pgdata, None
        if data is not None and (data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
            except DatabaseUnavailable:
                self._kill(data)
        self._dsn = None
        if self._tmp_root is not None:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            self._tmp_root = None

    @staticmethod
    def _kill(data: Path) -> None:
        """Last resort when pg_ctl stop fails: SIGQUIT then SIGKILL the postmaster."""
        try:
            pid = int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
