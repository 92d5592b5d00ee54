"""The toolkit's exception hierarchy and exit codes (one place, documented in the README)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, exactly as documented in the README (the table under "Exit codes")."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    DATABASE = 3
    PAUSED = 4  # the job stopped before finishing: paused (by an operator or a gate) or aborted
    INTERRUPTED = 130


class BackfillError(Exception):
    """Something went wrong in starforge-backfill."""

    exit_code: ExitCode = ExitCode.CHECK_FAILED
    hint: str | None = None

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        if hint is not None:
            self.hint = hint


class ConfigError(BackfillError):
    """The configuration is invalid."""

    exit_code = ExitCode.USAGE


class ConfigErrors(ConfigError):
    """Every problem of the configuration at once (each names its file, line and key); one is a ConfigError."""

    def __init__(self, problems: list[str]) -> None:
        count = f"{len(problems)} config errors: " if len(problems) > 1 else ""
        super().__init__(count + "; ".join(problems))
        self.problems = list(problems)


class UsageError(BackfillError):
    """The command was called wrongly."""

    exit_code = ExitCode.USAGE


class DatabaseUnavailable(BackfillError):
    """The database cannot be reached."""

    exit_code = ExitCode.DATABASE


class SchemaMissing(BackfillError):
    """The database lacks the expected schema."""

    exit_code = ExitCode.DATABASE
    hint = "Have you run `starforge-backfill db init`?"


class GateFailed(BackfillError):
    """A check or gate failed."""

    exit_code = ExitCode.CHECK_FAILED


class EtlError(Exception):
    """A snapshot cannot be applied; carries the contract's error type.

    `error_type` is one of PARSE_ERROR, VALIDATION_ERROR, FK_VIOLATION, DB_ERROR.
    `details` is small, JSON-serializable and never holds the raw payload.
    """

    PARSE_ERROR = "PARSE_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    FK_VIOLATION = "FK_VIOLATION"
    DB_ERROR = "DB_ERROR"

    def __init__(self, error_type: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.details = details or {}
