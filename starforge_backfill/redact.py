"""Passwords never reach a screen, a log line, an artifact or a JSON document: the one place that hides them.

Two jobs, two functions, because they take different inputs:

- `redact_dsn(dsn)` hides the password of ONE connection string or URL (a config value), in URI or
  key=value form, with every odd case a DSN can take (a password holding '@', '/' or '?', `sslpassword`,
  a quoted key=value password, `user:secret` with no host).
- `scrub_text(text)` cleans free text (a log line, an error message, a JSON document) that may *mention*
  DSNs: every registered secret becomes `***`, then anything shaped like a DSN password is hidden. A URI's
  password runs to the last '@' before white space, since it may hold '@' itself.

The registered secrets are process-wide (`add_secret`, `register`): the config loader registers the
passwords of every secret setting as soon as it reads them, so scrubbing works whether or not logging was
set up. Standard library only: the logging formatter imports this on every line.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a secret that contains another is replaced whole

_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
_KEY_VALUE = re.compile(r"\s*[A-Za-z_]+\s*=")
_HOSTS = re.compile(r"(?:\[[^\]]*\]|[^:,\[\]]*)(?::\d*)?(?:,(?:\[[^\]]*\]|[^:,\[\]]*)(?::\d*)?)*")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")
_KV_PASSWORD = re.compile(r"(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
# in free text: a URI's user:password@ (to the last '@' before white space), key=value and query passwords
_TEXT_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*@")
_TEXT_KV_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
_TEXT_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&\s]*")


def redact_dsn(dsn: str) -> str:
    """`dsn` (URI or key=value form) with any password replaced by "***"; never raises."""
    try:
        if not isinstance(dsn, str):
            return MASK
        scheme = _SCHEME.match(dsn)
        if not scheme and (_KEY_VALUE.match(dsn) or "@" not in dsn):
            return _KV_PASSWORD.sub(r"\1" + MASK, dsn)
        head, rest = (dsn[: scheme.end()], dsn[scheme.end() :]) if scheme else ("", dsn)
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, end)
        if at < 0 and "@" in rest:
            at = rest.rfind("@")  # a password holding '/', '?' or '#': hide everything up to the last '@'
        if at >= 0 and ":" in rest[:at]:
            rest = rest[: rest.index(":")] + ":" + MASK + rest[at:]
        elif at < 0 and ":" in rest[:end] and not _HOSTS.fullmatch(rest[:end]):
            rest = rest[: rest.index(":")] + ":" + MASK + rest[end:]  # "user:secret" with no host
        return head + _QUERY_PASSWORD.sub(r"\1" + MASK, rest)
    except Exception:
        return MASK


def scrub_text(text: str | None, extra: Iterable[str] = ()) -> str:
    """`text` with every registered secret (and each of `extra`) replaced, then any DSN password hidden."""
    if not text:
        return ""
    for secret in (*sorted((s for s in extra if s), key=len, reverse=True), *_ordered):
        text = text.replace(secret, MASK)
    if "://" in text or "password" in text.lower():
        text = _TEXT_URI_PASSWORD.sub(r"\1" + MASK + "@", text)
        text = _TEXT_KV_PASSWORD.sub(r"\1" + MASK, text)
        text = _TEXT_QUERY_PASSWORD.sub(r"\1" + MASK, text)
    return text


def passwords_in(value: str | None) -> list[str]:
    """The passwords a DSN or URL holds (a URI's, percent-decoded too, and a key=value `password`)."""
    found: list[str] = []
    if not value or not isinstance(value, str):
        return found
    if "://" in value:
        try:
            password = urlsplit(value.strip()).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
        found += [m.group(1) for m in re.finditer(r"[?&](?:ssl)?password=([^&#\s]+)", value, re.I)]
    for match in () if _SCHEME.match(value) else _KV_PASSWORD.finditer(value):
        raw = match.group(2)
        if raw.startswith("'"):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1] if raw.endswith("'") and len(raw) > 1 else raw[1:])
        if raw:
            found.append(raw)
    return list(dict.fromkeys(p for p in found if p))


def add_secret(secret: str | None) -> None:
    """Never show this string (a password) anywhere the toolkit writes."""
    global _ordered
    if not secret:
        return
    with _lock:
        _secrets.add(secret)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def register(*values: str | None) -> None:
    """Register the passwords of each DSN or URL in `values` (None and password-less values are skipped)."""
    for value in values:
        for password in passwords_in(value):
            add_secret(password)


def secrets() -> frozenset[str]:
    """The registered secrets (for tests and diagnostics; never print them)."""
    return frozenset(_secrets)
