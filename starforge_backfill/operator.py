"""Who is acting: every job and event records its operator, so the trail says who did what.

The operator is `--operator`, else `$STARFORGE_OPERATOR`, else `user@host` of the process. A process acts
for one operator at a time (`set_current`, done once by the CLI); a queue job acts for its payload's owner.
"""

from __future__ import annotations

import getpass
import os
import socket

ENV = "STARFORGE_OPERATOR"
_current: str | None = None


def resolve(explicit: str | None = None) -> str:
    """`explicit`, else $STARFORGE_OPERATOR, else `user@host`."""
    for value in (explicit, os.environ.get(ENV)):
        if value and value.strip():
            return value.strip()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def set_current(explicit: str | None) -> str:
    """Set (and return) the operator this process acts for."""
    global _current
    _current = resolve(explicit)
    return _current


def current() -> str:
    """The operator this process acts for (resolved from the environment if never set)."""
    return _current or resolve()
