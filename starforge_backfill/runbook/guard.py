"""`guard set KEY=VALUE ... --job-id J`, and the guard's part of `status` (guard.py is the guard itself).

Overrides are stored on the job (`backfill_jobs.guard_overrides`), so every worker of it on every host reads
them with its next guard reading (within `throttle.check_every`); each change is an event with the operator.
Keys are the config's `throttle` keys (durations without `_s`, e.g. `hold_recover=30s`); a value is validated
as the config file's would be, and a bad key or value is refused (exit 2) with nothing written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import psycopg
import yaml
from psycopg.types.json import Jsonb

from starforge_backfill import jobs, templates
from starforge_backfill import settings as config_settings
from starforge_backfill.artifacts import jsonable
from starforge_backfill.config import Config, ThrottleConfig, load_config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ConfigError, UsageError
from starforge_backfill.guard import TUNABLE, ProductionGuard


def _yaml_key(f: dataclasses.Field[Any]) -> str:
    return f.name[:-2] if f.metadata.get("kind") == "duration" and f.name.endswith("_s") else f.name


# YAML key (under `throttle`) -> ThrottleConfig / GuardSettings field, for the thresholds a running job may change
KEYS = {_yaml_key(f): f.name for f in dataclasses.fields(ThrottleConfig) if f.name in TUNABLE}


@dataclasses.dataclass(frozen=True)
class GuardSetResult:
    """What `guard set` stored: the fields changed now, and the job's overrides after it."""

    job_id: str
    overrides: dict[str, Any]
    all_overrides: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """`guard set --json`."""
        return dataclasses.asdict(self)


def parse_assignments(cfg: Config, assignments: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> {field: validated value}; UsageError (exit 2) on the first bad one."""
    if not assignments:
        raise UsageError("give at least one KEY=VALUE", hint=f"keys: {', '.join(sorted(KEYS))}")
    out: dict[str, Any] = {}
    for text in assignments:
        key, eq, raw = text.partition("=")
        key = key.strip().removeprefix("throttle.")
        if not eq or not key:
            raise UsageError(f"expected KEY=VALUE, got {text!r}", hint="e.g. `guard set probe_latency_ratio_max=2`")
        if key not in KEYS:
            raise UsageError(f"unknown guard threshold {key!r}", hint=f"keys: {', '.join(sorted(KEYS))}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if key == "probe_sql":
            value = raw.strip()
        try:
            checked = cfg.replace(**{f"throttle.{key}": value})
        except ConfigError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
        out[KEYS[key]] = getattr(checked.throttle, KEYS[key])
    return out


def set_thresholds(cfg: Config, *, job_id: str, assignments: list[str], by: str | None = None) -> GuardSetResult:
    """Store threshold overrides on a job; its running workers pick them up at their next guard reading."""
    changes = parse_assignments(cfg, assignments)
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        if jobs.get_job(conn, job_id) is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
        with conn.transaction():
            row = templates.fetch_one(conn, "guard/set_overrides.sql", {"job_id": job_id, "overrides": Jsonb(changes)})
            said = " ".join(f"{k}={v!r}" for k, v in changes.items())
            jobs.record_event(conn, job_id, "guard_set", f"guard set {said}", {"overrides": changes}, by=by)
    return GuardSetResult(job_id, changes, dict((row or {}).get("guard_overrides") or {}))


def reload(cfg: Config, job_id: str, throttle: Any, notify: Callable[[str], None]) -> dict[str, Any] | None:
    """SIGHUP: re-read the config file's `throttle` section into this process's guard (its base thresholds;
    `guard set` overrides still win). A `guard_reload` event lists what changed; a config that does not load
    is refused with one line, and the guard keeps its thresholds. `throttle.enabled` is not changed live."""
    if not isinstance(throttle, ProductionGuard):
        notify("SIGHUP: the production guard is off for this run: nothing to reload")
        return None
    try:
        fresh = load_config(cfg.source_path, overrides={"database.dsn": cfg.database.dsn})
    except ConfigError as exc:
        notify(f"error: SIGHUP: the config was not reloaded: {str(exc).splitlines()[0]}")
        return None
    new = dataclasses.replace(config_settings.guard(fresh), app_prefix=throttle.base.app_prefix)
    changes = {
        f.name: getattr(new, f.name)
        for f in dataclasses.fields(new)
        if getattr(new, f.name) != getattr(throttle.base, f.name)
    }
    throttle.reconfigure(new)
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        said = " ".join(f"{k}={v!r}" for k, v in changes.items()) or "nothing changed"
        jobs.record_event(
            conn, job_id, "guard_reload", f"guard thresholds reloaded (SIGHUP): {said}", {"changes": changes}
        )
    notify(f"SIGHUP: guard thresholds reloaded: {said}")
    return changes


def status_of(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    """The guard's part of a job's `status`: on or off, its state and its newest reading."""
    disabled = jobs.last_event(conn, job_id, "guard_disabled")
    last = templates.fetch_one(conn, "guard/last_reading.sql", {"job_id": job_id})
    if disabled is not None and (last is None or last["taken_at"] < disabled["created_at"]):
        return {"enabled": False, "state": None, "last_reading": None}
    return {
        "enabled": True,
        "state": None if last is None else last["state"],
        "last_reading": None if last is None else {k: jsonable(v) for k, v in last.items()},
    }
