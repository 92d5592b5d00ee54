"""The contract's integer rule (SNAPSHOT_CONTRACT.md, "The payload"), as the reference applies it.

Accepted: a JSON integer (a bool is *not* an integer), a float with no fractional part (finite), or a str
matching ``-?[0-9]+`` in full (ASCII digits only; no ``+``, no spaces, no trailing newline; leading zeros
allowed, ``"-0"`` is 0); a Decimal (the exact decoder's fraction) when integral. Ids must be >= 1, every
other integer >= 0; every int column <= INT32_MAX, ``xp`` <= INT64_MAX. A violation is a VALIDATION_ERROR;
for a range violation its details add ``minimum``, ``maximum`` and ``value`` (the value only when it is an
integer of at most 128 bits and the field name is not sensitive).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, NoReturn

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.failures import fail, json_type, locate
from starforge_backfill.etl.sensitive import is_sensitive_key

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

_INT_TEXT = re.compile(r"-?[0-9]+")
_MAX_SHOWN_BITS = 128
# A decimal string with more significant digits than this is out of range for any column.
_MAX_SIGNIFICANT_DIGITS = 40
_BELOW = "below minimum"
_ABOVE = "above maximum"


class Invalid(Exception):
    """An integer-rule violation, before it is located in the payload."""

    def __init__(self, reason: str, value_type: str, number: int | None = None, shown: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.value_type = value_type
        self.number = number
        self.shown = shown or value_type


def coerce_int(value: Any, minimum: int, maximum: int) -> int:
    """Apply the integer rule to a non-None value; raise Invalid on a violation."""
    kind = type(value)
    if kind is int:
        number = value
    elif kind is str:
        if _INT_TEXT.fullmatch(value) is None:
            raise Invalid("not a decimal integer string", "string")
        negative = value[0] == "-"
        digits = value.lstrip("-").lstrip("0")
        if len(digits) > _MAX_SIGNIFICANT_DIGITS:
            raise Invalid(_BELOW if negative else _ABOVE, "string")
        number = int(digits) if digits else 0
        if negative:
            number = -number
    elif isinstance(value, float):
        if not value.is_integer():
            what = "fractional number" if math.isfinite(value) else "non-finite number"
            raise Invalid(what, "number", shown=what)
        number = int(value)
    elif kind is bool:
        raise Invalid("boolean is not an integer", "boolean")
    elif isinstance(value, int):
        number = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise Invalid("fractional number", "number", shown="fractional number")
        number = int(value)
    else:
        raise Invalid("not an integer", json_type(value))
    if number < minimum:
        raise Invalid(_BELOW, json_type(value), number)
    if number > maximum:
        raise Invalid(_ABOVE, json_type(value), number)
    return number


def expected(minimum: int) -> str:
    """Describe the accepted integers for a message."""
    if minimum == 0:
        return "a non-negative integer"
    if minimum == 1:
        return "a positive integer"
    return f"an integer >= {minimum}"


def raise_invalid(
    invalid: Invalid,
    *,
    minimum: int,
    maximum: int,
    section: str | None,
    index: int | None,
    key: Any,
    field: str,
) -> NoReturn:
    """Turn an Invalid into a located VALIDATION_ERROR."""
    label, details = locate(section, index, key, field)
    details["reason"] = invalid.reason
    details["value_type"] = invalid.value_type
    number = invalid.number
    if invalid.reason in (_BELOW, _ABOVE):
        details["minimum"] = minimum
        details["maximum"] = maximum
        show = number is not None and number.bit_length() <= _MAX_SHOWN_BITS and not is_sensitive_key(field)
        if show:
            details["value"] = number
        if invalid.reason == _BELOW:
            tail = f"expected {expected(minimum)}, got {number if show else 'a smaller value'}"
        else:
            tail = f"{number if show else 'value'} exceeds the maximum {maximum}"
    else:
        tail = f"expected {expected(minimum)}, got {invalid.shown}"
    raise EtlError(EtlError.VALIDATION_ERROR, f"{label}: {tail}", details)


def parse_int(value: Any, *, field: str, minimum: int, maximum: int) -> int:
    """Apply the contract's integer rule to `value` (None is an error here); raise VALIDATION_ERROR."""
    if value is None:
        fail(
            EtlError.VALIDATION_ERROR,
            f"expected {expected(minimum)}, got null",
            field=field,
            reason="missing",
            value_type="null",
        )
    try:
        return coerce_int(value, minimum, maximum)
    except Invalid as invalid:
        raise_invalid(invalid, minimum=minimum, maximum=maximum, section=None, index=None, key=None, field=field)


def try_int(value: Any, minimum: int, maximum: int) -> int | None:
    """Return `value` under the integer rule, or None when it is None or invalid."""
    if value is None:
        return None
    try:
        return coerce_int(value, minimum, maximum)
    except Invalid:
        return None
