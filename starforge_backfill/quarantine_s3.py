"""Copies of quarantined snapshots in S3: the redacted local copy (etl/pipeline.py `quarantine`) uploaded to
`quarantine.s3_url` after its batch committed, never inside an ETL transaction.

The local file stays the source of truth. An `Uploader` (one background thread per process) takes the failures
of each committed batch, uploads their files with bounded retries (tenacity) and records each copy's state in
`quarantine_copies` (S3 URL, or local only with the last error), so the report and `quarantine push` see it
from any host. A failed upload is logged and recorded, never raised into the run. boto3 is imported only when
an S3 URL is configured; credentials come from the standard AWS chain and never pass through here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from starforge_backfill import templates
from starforge_backfill.errors import ConfigError
from starforge_backfill.redact import scrub_text

log = logging.getLogger("starforge_backfill.quarantine")
ENDED = "the run ended before this copy was uploaded"


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """Where copies go (`s3://bucket/prefix`) and how hard an upload tries (plain values, from settings.py)."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None
    timeout_s: float = 10.0
    attempts: int = 3
    drain_s: float = 60.0

    @property
    def bucket(self) -> str:
        """The bucket of `url`."""
        return self.url.removeprefix("s3://").split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The key prefix of `url`, without leading or trailing slashes ("" for the bucket's root)."""
        rest = self.url.removeprefix("s3://").split("/", 1)
        return rest[1].strip("/") if len(rest) > 1 else ""

    def key(self, job_id: str, snapshot_id: uuid.UUID | str) -> str:
        """The object key of one copy: `<prefix>/<job_id>/<snapshot_id>.json`."""
        return "/".join(p for p in (self.prefix, job_id, f"{snapshot_id}.json") if p)

    def object_url(self, key: str) -> str:
        """`s3://bucket/key`."""
        return f"s3://{self.bucket}/{key}"


@dataclasses.dataclass(frozen=True)
class Copy:
    """One local quarantine copy to upload."""

    job_id: str
    snapshot_id: uuid.UUID
    path: Path
    error_type: str | None = None


@dataclasses.dataclass
class Tally:
    """What uploads did: copies uploaded, and the copies left local only with why."""

    uploaded: list[str] = dataclasses.field(default_factory=list)
    local_only: dict[str, str] = dataclasses.field(default_factory=dict)  # snapshot id -> last error

    def to_json(self) -> dict[str, Any]:
        """The counts and the local-only copies (docs/JSON.md, `quarantine push`)."""
        return {
            "uploaded": len(self.uploaded),
            "local_only": len(self.local_only),
            "local_only_copies": [{"snapshot_id": s, "error": e} for s, e in sorted(self.local_only.items())],
        }


def make_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for `settings` (credentials: the standard chain). ConfigError when boto3 is absent."""
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise ConfigError(
            "quarantine.s3_url is set but boto3 is not installed",
            hint="pip install 'starforge-backfill[s3]', or unset quarantine.s3_url",
        ) from None
    boto = BotoConfig(
        connect_timeout=settings.timeout_s,
        read_timeout=settings.timeout_s,
        retries={"max_attempts": 1, "mode": "standard"},  # our own retries, below, bound the total time
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=boto)


def _retryable(exc: BaseException) -> bool:
    """Network and service errors are retried; a missing local file is not."""
    return not isinstance(exc, OSError) or type(exc).__module__.startswith(("botocore", "urllib3"))


def upload(client: Any, settings: S3Settings, copy: Copy) -> tuple[str, int]:
    """Upload one copy's file; returns (its s3:// URL, attempts made). Raises the last error after the retries."""
    key = settings.key(copy.job_id, copy.snapshot_id)
    made = 0
    for attempt in Retrying(
        stop=stop_after_attempt(settings.attempts) | stop_after_delay(settings.attempts * settings.timeout_s),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception(_retryable),
        reraise=True,
    ):
        with attempt:
            made += 1
            body = copy.path.read_bytes()
            client.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="application/json")
    return settings.object_url(key), made


def describe(exc: BaseException) -> str:
    """A short, password-free description of an upload error."""
    return scrub_text(f"{type(exc).__name__}: {exc}")[:300]


def record(
    conn: psycopg.Connection[Any],
    copy: Copy,
    *,
    s3_url: str | None,
    attempts: int,
    error: str | None,
) -> None:
    """Upsert one copy's state in quarantine_copies."""
    templates.execute(
        conn,
        "quarantine/record_copy.sql",
        {
            "job_id": copy.job_id,
            "snapshot_id": copy.snapshot_id,
            "error_type": copy.error_type,
            "local_path": str(copy.path),
            "s3_url": s3_url,
            "uploaded_at": dt.datetime.now(dt.UTC) if s3_url else None,
            "attempts": attempts,
            "last_error": error,
        },
    )


def copies(conn: psycopg.Connection[Any], job_id: str) -> dict[str, dict[str, Any]]:
    """The recorded copies of a job, by snapshot id (text)."""
    return {str(r["snapshot_id"]): r for r in templates.fetch_all(conn, "quarantine/copies.sql", {"job_id": job_id})}


def local_copies(job_id: str, folder: Path) -> list[Copy]:
    """The local quarantine copies of a job: `folder`/*.json (the pipeline names them by snapshot id)."""
    out = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            sid = uuid.UUID(path.stem)
        except ValueError:
            continue
        out.append(Copy(job_id, sid, path))
    return out


def _error_type_of(path: Path) -> str | None:
    """The error type a local copy names (None when unreadable)."""
    try:
        value = json.loads(path.read_bytes()).get("error_type")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


class Uploader:
    """One background thread that uploads copies handed to it and records their state; never raises into its
    callers. `submit` after a batch committed; `close` at the end of the run (bounded by `settings.drain_s`)."""

    def __init__(self, settings: S3Settings, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self.settings = settings
        self.client = make_client(settings)  # a missing boto3 fails here, before any work starts
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._queue: queue.Queue[Copy | None] = queue.Queue()
        self._ending = threading.Event()
        self.tally = Tally()
        self._thread = threading.Thread(target=self._loop, name="quarantine-upload", daemon=True)
        self._thread.start()

    def submit(self, job_id: str, folder: Path, failures: Iterable[Any]) -> None:
        """Queue the local copies of a committed batch's failures (SnapshotFailure: snapshot_id, error_type)."""
        for f in failures:
            self._queue.put(Copy(job_id, f.snapshot_id, Path(folder) / f"{f.snapshot_id}.json", f.error_type))

    def sweep(self, conn: psycopg.Connection[Any], job_id: str, folder: Path) -> int:
        """Queue the job's local copies that no earlier run uploaded (a resumed job's leftovers); how many."""
        done = {s for s, r in copies(conn, job_id).items() if r["s3_url"]}
        todo = [c for c in local_copies(job_id, folder) if str(c.snapshot_id) not in done]
        for c in todo:
            self._queue.put(dataclasses.replace(c, error_type=_error_type_of(c.path)))
        return len(todo)

    def close(self, drain_s: float | None = None) -> Tally:
        """Upload what is queued for at most `drain_s` (default `settings.drain_s`; 0 after a Ctrl-C); what is
        left is recorded as local only, without another upload attempt."""
        self._queue.put(None)
        self._thread.join(self.settings.drain_s if drain_s is None else drain_s)
        self._ending.set()  # past the drain budget: the thread records the rest without uploading
        self._thread.join(self.settings.timeout_s + 5)
        return self.tally

    def _loop(self) -> None:
        while True:
            copy = self._queue.get()
            if copy is None:
                break
            if self._ending.is_set():
                self._note(copy, None, 0, ENDED)
                continue
            try:
                url, made = upload(self.client, self.settings, copy)
            except Exception as exc:  # the copy stays local; the run goes on
                error = describe(exc)
                log.warning("quarantine copy of %s not uploaded: %s", copy.snapshot_id, error)
                self._note(copy, None, self.settings.attempts, error)
            else:
                self._note(copy, url, made, None)
        if self._conn is not None:
            self._conn.close()

    def _note(self, copy: Copy, url: str | None, attempts: int, error: str | None) -> None:
        if url:
            self.tally.uploaded.append(url)
            self.tally.local_only.pop(str(copy.snapshot_id), None)
        else:
            self.tally.local_only[str(copy.snapshot_id)] = error or ENDED
        for _ in range(2):  # a broken connection is reopened once; the state is best effort
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                record(self._conn, copy, s3_url=url, attempts=attempts, error=error)
                return
            except psycopg.Error as exc:
                log.warning("quarantine copy state of %s not recorded: %s", copy.snapshot_id, describe(exc))
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                time.sleep(0.1)


def push(
    conn: psycopg.Connection[Any], settings: S3Settings, job_id: str, folder: Path, *, client: Any = None
) -> Tally:
    """Upload a job's local-only copies (every file in `folder` without a recorded S3 URL) and record them."""
    client = client or make_client(settings)
    recorded = copies(conn, job_id)
    tally = Tally()
    for copy in local_copies(job_id, folder):
        if (recorded.get(str(copy.snapshot_id)) or {}).get("s3_url"):
            continue
        known = (recorded.get(str(copy.snapshot_id)) or {}).get("error_type")
        copy = dataclasses.replace(copy, error_type=known or _error_type_of(copy.path))
        try:
            url, made = upload(client, settings, copy)
        except Exception as exc:
            tally.local_only[str(copy.snapshot_id)] = describe(exc)
            record(conn, copy, s3_url=None, attempts=settings.attempts, error=describe(exc))
        else:
            tally.uploaded.append(url)
            record(conn, copy, s3_url=url, attempts=made, error=None)
    return tally
