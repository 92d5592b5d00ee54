"""`serve`: the admin API on uvicorn (`runbook/admin_api.py`), and `serve hash-token` for its config."""

from __future__ import annotations

import sys
from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@click.group("serve", invoke_without_command=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port (overrides api.listen's port).")
@click.option("--host", help="Listen on this address (overrides api.listen's host; keep it loopback, see docs).")
@click.pass_obj
@handled
def group(obj: Ctx, port: int | None, host: str | None) -> None:
    """The admin API (POST /api/v1/admin/backfill, status, pause, resume, /metrics, /healthz) until SIGTERM.

    Listens on api.listen (default 127.0.0.1:8470) and accepts the bearer tokens of api.tokens;
    `serve hash-token` prints a token's config line. Put a TLS reverse proxy in front (docs/OPERATIONS.md).
    """
    if click.get_current_context().invoked_subcommand is None:
        _run(obj, port, host)


def _run(obj: Ctx, port: int | None, host: str | None) -> None:
    from starforge_backfill.errors import ConfigError, UsageError
    from starforge_backfill.runbook.admin_api import create_app

    cfg = obj.config()
    if not cfg.api.tokens:
        raise ConfigError(
            "api.tokens is empty: the admin API would refuse every call",
            hint="add one: `starforge-backfill serve hash-token --name NAME --scope admin` and paste its line",
        )
    cfg_host, cfg_port = cfg.api.host_port()
    host, port = host or cfg_host, port or cfg_port
    if host not in LOOPBACK:
        obj.say(
            f"warning: listening on {host}, not loopback: the API speaks plain HTTP; put a TLS reverse proxy in front"
        )
    _check_bind(host, port)
    obj.say(f"admin API on http://{host}:{port} ({len(cfg.api.tokens)} token(s)); SIGTERM or Ctrl-C stops it")
    if not _serve_until_signal(create_app(cfg), host, port):
        raise UsageError(f"cannot listen on {host}:{port} (in use, or not an address of this host)")
    obj.say("admin API stopped")


def _check_bind(host: str, port: int) -> None:
    """UsageError (exit 2, one line) when `host:port` cannot be listened on: taken, or not this host's."""
    import socket

    from starforge_backfill.errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="pick another with serve --port N"
        ) from None


def _serve_until_signal(app: Any, host: str, port: int) -> bool:
    """Serve `app` on uvicorn until SIGTERM or Ctrl-C (it stops accepting and finishes open requests, 10 s at
    most); False when it never started listening."""
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but the signal that stopped it is its normal end (exit 0): uvicorn would raise it
        again once its handlers are restored, and the process would die by it."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    getattr(self, "_captured_signals", []).clear()

    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=10
    )
    server = Server(config)
    server.run()
    return bool(server.started)


@group.command("hash-token")
@click.option("--name", required=True, help="The token's name: recorded as the operator of what it does.")
@click.option("--scope", type=click.Choice(["read", "admin"]), default="admin", show_default=True)
@click.pass_obj
@handled
def hash_token(obj: Ctx, name: str, scope: str) -> None:
    """Read a token on stdin; print its api.tokens line (only the sha256 goes in the config, never the token)."""
    from starforge_backfill.errors import UsageError
    from starforge_backfill.runbook.admin_api import token_hash

    token = sys.stdin.readline().rstrip("\r\n")
    if len(token.strip()) < 16:
        raise UsageError(
            "the token on stdin is empty or shorter than 16 characters",
            hint="make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    if not name.strip():
        raise UsageError("--name must not be empty")
    digest = token_hash(token.strip())
    line = f"    - {{name: {name.strip()}, scope: {scope}, sha256: {digest}}}"
    data = {"name": name.strip(), "scope": scope, "sha256": digest, "yaml": line}
    obj.emit(data, lambda: click.echo(line))
