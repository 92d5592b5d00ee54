"""Sensitive keys (docs SNAPSHOT_CONTRACT.md, "Sensitive keys"): any object key, at any depth, that contains
token, password, passwd, secret, session, auth or (contract v2, rule 8: the account's login name) username,
in any case. `strip_sensitive` drops them (a row's extra),
`redact` keeps them with their value replaced (quarantine copies). The SQL path spells the same rule as a
regex (sql/etl/_macros.sql, SENSITIVE_RE), derived from SENSITIVE_PARTS by a unit test."""

from __future__ import annotations

import functools
from typing import Any

SENSITIVE_PARTS = ("token", "password", "passwd", "secret", "session", "auth", "username")
REDACTED = "[REDACTED]"
_CONTAINERS = (dict, list, tuple)


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Return True when `key` contains a sensitive part (case-insensitive substring match)."""
    lowered = (key if isinstance(key, str) else str(key)).lower()
    return any(part in lowered for part in SENSITIVE_PARTS)


def strip_sensitive(value: Any) -> Any:
    """Return a deep copy of `value` with every sensitive key dropped, at any depth."""
    # Recursing only into containers keeps this cheap on the fallback path's many small `extra` objects.
    if isinstance(value, dict):
        return {
            k: strip_sensitive(v) if isinstance(v, _CONTAINERS) else v
            for k, v in value.items()
            if not is_sensitive_key(k)
        }
    if isinstance(value, list):
        return [strip_sensitive(v) if isinstance(v, _CONTAINERS) else v for v in value]
    if isinstance(value, tuple):
        return tuple(strip_sensitive(v) if isinstance(v, _CONTAINERS) else v for v in value)
    return value


def redact(value: Any) -> Any:
    """Return a deep copy of `value` with every sensitive key's value replaced by "[REDACTED]"."""
    if isinstance(value, dict):
        return {k: REDACTED if is_sensitive_key(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    return value
