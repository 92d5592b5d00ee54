"""The admin API behind `serve`: the runbook's "B) Use admin API", a Starlette (ASGI) app over the same steps.

* `POST /api/v1/admin/backfill` {from, to, batch_size, concurrency, owner[, reprocess]} validates the body and
  enqueues the `backfill_range` queue_jobs row the runbook's SQL inserts (`sql/queue/enqueue.sql`); 202 with
  the job id the worker will create (`queue-<queue row id>`) and the queue row id.
* `GET /api/v1/admin/backfill/{job_id}`: the job object of `status --json` (a queued row no worker has taken
  yet: state `queued`); `POST .../{job_id}/pause` and `.../resume` (`resume --no-wait`: the workers carry on).
* `GET /metrics`: the database gauges of `dbmetrics` (sampled at each scrape) and the API's request counter.
* `GET /healthz` (no token): 200 when the database answers, 503 otherwise.

Every other route needs `Authorization: Bearer <token>`: its sha256 is compared in constant time with every
configured hash (`api.tokens`); no or a wrong token is 401, a `read` token on a POST 403. What a token does is
recorded with its NAME as the operator (pause/resume events, the queue row's `requested_by`, then the job's
`requested` event), never the token. Errors are one line of JSON: {"error": "..."}.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from starlette import status as http
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starforge_backfill import artifacts, jobs, templates
from starforge_backfill.config import ApiToken, Config
from starforge_backfill.db import connect_cfg, describe_dsn, translate_errors
from starforge_backfill.errors import BackfillError, GateFailed, UsageError
from starforge_backfill.redact import scrub_text
from starforge_backfill.runbook import control
from starforge_backfill.runbook import run as run_step

log = logging.getLogger("starforge_backfill.api")

MAX_BODY_BYTES = 64 * 1024
BODY_KEYS = ("from", "to", "batch_size", "concurrency", "owner", "reprocess")
LIMITS = {"batch_size": (1, 10000), "concurrency": (1, 256)}
SCOPES_FOR = {"GET": ("read", "admin"), "POST": ("admin",)}


class ApiError(Exception):
    """An answer other than success: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def token_hash(token: str) -> str:
    """The hex SHA-256 that `api.tokens` stores for a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(tokens: tuple[ApiToken, ...], header: str | None) -> ApiToken:
    """The configured token an `Authorization: Bearer ...` header presents; ApiError 401 otherwise.

    Every configured hash is compared (hmac.compare_digest), so the time taken says nothing about which
    one, or how much of one, matched."""
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(http.HTTP_401_UNAUTHORIZED, "missing bearer token (Authorization: Bearer <token>)")
    digest = token_hash(presented.strip())
    found: ApiToken | None = None
    for t in tokens:
        if hmac.compare_digest(digest, t.sha256):
            found = t
    if found is None:
        raise ApiError(http.HTTP_401_UNAUTHORIZED, "invalid token")
    return found


def parse_backfill_body(raw: bytes, cfg: Config) -> dict[str, Any]:
    """The queue payload of a `POST /api/v1/admin/backfill` body; ApiError 400 (not JSON) or 422 otherwise."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(http.HTTP_400_BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(http.HTTP_400_BAD_REQUEST, "body must be a JSON object")
    unknown = sorted(k for k in body if k not in BODY_KEYS)
    if unknown:
        raise ApiError(422, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(BODY_KEYS)}")
    for key in ("from", "to", "owner"):
        if key not in body:
            raise ApiError(422, f"missing {key!r}")
    for key in ("from", "to"):
        if not isinstance(body[key], str):
            raise ApiError(422, f"{key!r} must be an ISO-8601 timestamp string")
    try:
        selector = jobs.Selector.parse(body["from"], body["to"])
    except UsageError as exc:
        raise ApiError(422, str(exc).replace("--from", "from").replace("--to", "to")) from None
    owner = body["owner"]
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 200:
        raise ApiError(422, "'owner' must be a non-empty string (at most 200 characters)")
    sizes = {"batch_size": cfg.etl.batch_size, "concurrency": cfg.job.concurrency}
    for key, (lo, hi) in LIMITS.items():
        value = body.get(key, sizes[key])
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ApiError(422, f"{key!r} must be an integer in {lo}..{hi}")
        sizes[key] = value
    reprocess = body.get("reprocess", False)
    if not isinstance(reprocess, bool):
        raise ApiError(422, "'reprocess' must be true or false")
    return {
        "from_created_at": selector.from_ts.isoformat(),
        "to_created_at": selector.to_ts.isoformat(),
        "batch_size": sizes["batch_size"],
        "concurrency": sizes["concurrency"],
        "owner": owner.strip(),
        "reprocess": reprocess,
    }


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past MAX_BODY_BYTES (by Content-Length or as it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(http.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(http.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(raw: bytes) -> str | None:
    """The optional {"reason": "..."} body of pause/resume."""
    if not raw.strip():
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(http.HTTP_400_BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(http.HTTP_400_BAD_REQUEST, "body must be a JSON object")
    if set(body) - {"reason"}:
        raise ApiError(422, f"unknown key(s) {', '.join(sorted(set(body) - {'reason'}))}; allowed: reason")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise ApiError(422, "'reason' must be a non-empty string")
    return reason


def _answer(status: int, data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(artifacts.jsonable(data), status_code=status)


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Unknown route (404) or method (405): the same one-line JSON error as every other answer."""
    from starlette.exceptions import HTTPException

    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _answer(status, {"error": "no such route" if status == 404 else "method not allowed on this route"})


class AdminApi:
    """The app's state (config, database metrics) and its endpoints; `app` is the Starlette application."""

    def __init__(self, cfg: Config) -> None:
        from prometheus_client import CollectorRegistry, Counter

        from starforge_backfill.dbmetrics import DatabaseCollector

        self.cfg = cfg
        self.registry = CollectorRegistry()
        self.db_metrics = DatabaseCollector(describe_dsn(cfg.database.dsn))
        self.registry.register(self.db_metrics)
        self.requests = Counter(
            "starforge_backfill_api_requests",
            "Admin API requests answered, by route and HTTP status.",
            ["route", "status"],
            registry=self.registry,
        )
        routes = [
            Route("/healthz", self._wrap("healthz", None, self.healthz), methods=["GET"]),
            Route("/metrics", self._wrap("metrics", "GET", self.metrics), methods=["GET"]),
            Route("/api/v1/admin/backfill", self._wrap("enqueue", "POST", self.enqueue), methods=["POST"]),
            Route("/api/v1/admin/backfill/{job_id}", self._wrap("status", "GET", self.status), methods=["GET"]),
            Route("/api/v1/admin/backfill/{job_id}/pause", self._wrap("pause", "POST", self.pause), methods=["POST"]),
            Route(
                "/api/v1/admin/backfill/{job_id}/resume", self._wrap("resume", "POST", self.resume), methods=["POST"]
            ),
        ]
        self.app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error})

    def _wrap(
        self, route: str, needs: str | None, handler: Callable[[Request, ApiToken | None], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate (unless `needs` is None), check the scope, answer errors as one JSON line, log."""

        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            token: ApiToken | None = None
            try:
                if needs is not None:
                    token = authenticate(self.cfg.api.tokens, request.headers.get("authorization"))
                    if token.scope not in SCOPES_FOR[needs]:
                        wanted = " or ".join(SCOPES_FOR[needs])
                        message = f"token {token.name!r} has scope {token.scope}; this call needs {wanted}"
                        raise ApiError(http.HTTP_403_FORBIDDEN, message)
                response = await handler(request, token)
            except ApiError as exc:
                response = _answer(exc.status, {"error": str(exc)})
            except UsageError as exc:  # "no job ..."
                response = _answer(http.HTTP_404_NOT_FOUND, {"error": str(exc)})
            except GateFailed as exc:  # not running, nothing to resume, config changed
                response = _answer(http.HTTP_409_CONFLICT, {"error": str(exc)})
            except BackfillError as exc:  # the database is unreachable or lacks the schema
                response = _answer(http.HTTP_503_SERVICE_UNAVAILABLE, {"error": scrub_text(str(exc))})
            except Exception as exc:  # a bug: one line to the caller, the traceback to the log
                log.exception("%s %s failed", request.method, request.url.path)
                response = _answer(
                    http.HTTP_500_INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(exc).__name__})"}
                )
            self.requests.labels(route, str(response.status_code)).inc()
            log.info(
                "%s %s -> %d (token %s, %.0f ms)",
                request.method,
                request.url.path,
                response.status_code,
                token.name if token else "-",
                (time.monotonic() - started) * 1000,
                extra={"event": "api_request", "token_name": token.name if token else None, "route": route},
            )
            return response

        return endpoint

    async def healthz(self, _request: Request, _token: ApiToken | None) -> Response:
        """200 {"status": "ok"} when `SELECT 1` answers, else 503 with the reason (no password)."""

        def probe() -> None:
            with connect_cfg(self.cfg, autocommit=True, application_name=self._app()) as conn:
                conn.execute("SELECT 1")

        try:
            await run_in_threadpool(probe)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return _answer(
                503,
                {
                    "status": "unavailable",
                    "database": describe_dsn(self.cfg.database.dsn),
                    "error": scrub_text(f"{type(exc).__name__}: {first}"),
                },
            )
        return _answer(200, {"status": "ok", "database": describe_dsn(self.cfg.database.dsn)})

    async def metrics(self, _request: Request, _token: ApiToken | None) -> Response:
        """Prometheus exposition: the database gauges sampled now (the last sample if the database fails)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        def sample() -> bytes:
            try:
                with connect_cfg(self.cfg, autocommit=True, application_name=self._app()) as conn:
                    self.db_metrics.sample(conn)
            except Exception as exc:  # a scrape still answers, with the API's own counters
                log.warning("cannot sample database metrics: %s", type(exc).__name__)
            return generate_latest(self.registry)

        return Response(await run_in_threadpool(sample), media_type=CONTENT_TYPE_LATEST)

    async def enqueue(self, request: Request, token: ApiToken | None) -> Response:
        """Validate the body, insert the `backfill_range` row; 202 with the job id the worker will create."""
        assert token is not None
        payload = parse_backfill_body(await read_body(request), self.cfg) | {"requested_by": token.name}

        def insert() -> dict[str, Any]:
            with connect_cfg(self.cfg, autocommit=True, application_name=self._app()) as conn, translate_errors():
                row = templates.fetch_one(
                    conn, "queue/enqueue.sql", {"type": "backfill_range", "payload": Jsonb(payload)}
                )
            assert row is not None
            return row

        row = await run_in_threadpool(insert)
        log.info("enqueued backfill_range %s for %s by token %s", row["id"], payload["owner"], token.name)
        return _answer(
            http.HTTP_202_ACCEPTED,
            {"job_id": f"queue-{row['id']}", "queue_id": row["id"], "status": row["status"], "payload": payload},
        )

    async def status(self, request: Request, _token: ApiToken | None) -> Response:
        """The job's `status --json` object; a queue row no worker has taken yet answers state `queued`."""
        job_id = request.path_params["job_id"]

        def read() -> dict[str, Any]:
            try:
                return control.status(self.cfg, job_id=job_id, limit=1).jobs[0]
            except UsageError:
                queued = self._queued(job_id)
                if queued is None:
                    raise
                return {"job_id": job_id, "state": "queued", "queue": queued}

        return _answer(200, await run_in_threadpool(read))

    async def pause(self, request: Request, token: ApiToken | None) -> Response:
        """`pause --job-id`, recorded with the token's name as the operator."""
        assert token is not None
        reason = _reason(await read_body(request)) or f"paused through the admin API by {token.name}"
        job_id = request.path_params["job_id"]
        res = await run_in_threadpool(lambda: control.pause(self.cfg, job_id=job_id, reason=reason, by=token.name))
        return _answer(200, res.to_json())

    async def resume(self, request: Request, token: ApiToken | None) -> Response:
        """`resume --no-wait --job-id`: set it running for the workers; recorded with the token's name."""
        assert token is not None
        reason = _reason(await read_body(request)) or f"resumed through the admin API by {token.name}"
        job_id = request.path_params["job_id"]
        row = await run_in_threadpool(lambda: run_step.resume(self.cfg, job_id=job_id, reason=reason, by=token.name))
        return _answer(200, control.PauseResult([jobs.public_row(row)]).to_json())

    def _queued(self, job_id: str) -> dict[str, Any] | None:
        import uuid

        if not job_id.startswith("queue-"):
            return None
        try:
            queue_id = uuid.UUID(job_id.removeprefix("queue-"))
        except ValueError:
            return None
        with connect_cfg(self.cfg, autocommit=True, application_name=self._app()) as conn, translate_errors():
            return templates.fetch_one(conn, "queue/get.sql", {"id": queue_id})

    def _app(self) -> str:
        return f"{self.cfg.database.application_name}:api"


def create_app(cfg: Config) -> Starlette:
    """The ASGI application for `cfg` (uvicorn serves it: `cli/serve.py`)."""
    return AdminApi(cfg).app
