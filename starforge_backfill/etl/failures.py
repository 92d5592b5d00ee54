"""How the reference (`etl.contract`) reports a contract violation: an `EtlError` located in the payload.

A message reads like ``Troops[3].Amount: expected a non-negative integer, got string``; its details hold the
place (``section``, ``index`` in list form or ``key`` in keyed form, ``field``), a ``reason`` and the value's
JSON type, never the value of a string, the raw payload or a sensitive key's value. Keys shown in messages
and details are truncated to 64 characters, and a sensitive key is shown as ``[REDACTED]``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.sensitive import REDACTED, is_sensitive_key

_MAX_KEY_CHARS = 64


def json_type(value: Any) -> str:
    """Name `value`'s JSON type for messages and details (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def shown_key(key: Any) -> str:
    """Return a dict key fit for messages and details: truncated, and hidden when sensitive."""
    text = key if isinstance(key, str) else str(key)
    if is_sensitive_key(text):
        return REDACTED
    if len(text) > _MAX_KEY_CHARS:
        return text[:_MAX_KEY_CHARS] + "..."
    return text


def locate(section: str | None, index: int | None, key: Any, field: str | None) -> tuple[str, dict]:
    """Return the message label and the base details for a place in the payload."""
    details: dict[str, Any] = {}
    label = ""
    if section is not None:
        details["section"] = section
        label = section
    if index is not None:
        details["index"] = index
        label += f"[{index}]"
    elif key is not None:
        shown = shown_key(key)
        details["key"] = shown
        label += f"[{json.dumps(shown)}]"
    if field is not None:
        details["field"] = field
        label = f"{label}.{field}" if label else field
    return label, details


def fail(
    error_type: str,
    message_tail: str,
    *,
    section: str | None = None,
    index: int | None = None,
    key: Any = None,
    field: str | None = None,
    reason: str,
    value_type: str | None = None,
) -> NoReturn:
    """Raise an EtlError located at a place in the payload."""
    label, details = locate(section, index, key, field)
    details["reason"] = reason
    if value_type is not None:
        details["value_type"] = value_type
    raise EtlError(error_type, f"{label}: {message_tail}" if label else message_tail, details)
