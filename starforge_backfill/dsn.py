"""A DSN as it may be shown: any password replaced by `***` (URI or key=value form). No dependencies, so the
config loader, the database helpers and the CLI's error messages share it."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
_KEY_VALUE = re.compile(r"\s*[A-Za-z_]+\s*=")
_HOSTS = re.compile(r"(?:\[[^\]]*\]|[^:,\[\]]*)(?::\d*)?(?:,(?:\[[^\]]*\]|[^:,\[\]]*)(?::\d*)?)*")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")
_KV_PASSWORD = re.compile(r"(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def redact_dsn(dsn: str) -> str:
    """`dsn` (URI or key=value form) with any password replaced by "***"; never raises."""
    try:
        if not isinstance(dsn, str):
            return "***"
        scheme = _SCHEME.match(dsn)
        if not scheme and (_KEY_VALUE.match(dsn) or "@" not in dsn):
            return _KV_PASSWORD.sub(r"\1***", dsn)
        head, rest = (dsn[: scheme.end()], dsn[scheme.end() :]) if scheme else ("", dsn)
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, end)
        if at < 0 and "@" in rest:
            at = rest.rfind("@")  # a password holding '/', '?' or '#': hide everything up to the last '@'
        if at >= 0 and ":" in rest[:at]:
            rest = rest[: rest.index(":")] + ":***" + rest[at:]
        elif at < 0 and ":" in rest[:end] and not _HOSTS.fullmatch(rest[:end]):
            rest = rest[: rest.index(":")] + ":***" + rest[end:]  # "user:secret" with no host
        return head + _QUERY_PASSWORD.sub(r"\1***", rest)
    except Exception:
        return "***"
