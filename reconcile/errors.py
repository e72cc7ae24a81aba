"""The one exception hierarchy of reconciliation, with stable codes and the exit statuses.

Exit statuses are the contract with a scheduled job: 0 clean (nothing unresolved), 1 differences
to look at, 2 the run could not be done (bad input, missing source, bad configuration). Codes are
stable strings a job wrapper may match on; messages say what to do.
"""

from __future__ import annotations

from protocol.errors import CodedError

EXIT_CLEAN = 0
EXIT_DIFFERENCES = 1
EXIT_ERROR = 2


class ReconcileError(CodedError):
    """A run that cannot be done. `code` is stable; the message is for a person."""

    code = "reconcile_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadInput(ReconcileError):
    """An input file is not what its format says: names the file, the line and the field."""

    code = "bad_input"

    def __init__(self, file: str, line: int | None, field: str | None, why: str) -> None:
        where = file if line is None else f"{file}, line {line}"
        what = f"field {field!r}: {why}" if field else why
        super().__init__(f"{where}: {what}")
        self.file = file
        self.line = line
        self.field = field
        self.why = why

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str | None, str]]:
        # Crosses from the worker process that joins the bills (pickled with its own arguments).
        return (type(self), (self.file, self.line, self.field, self.why))


class ConfigError(ReconcileError):
    """A mapping file, settings file or command-line option is wrong."""

    code = "bad_config"


class SourceUnavailable(ReconcileError):
    """A source could not be read or downloaded at all (missing file, locked journal, network)."""

    code = "source_unavailable"


class NotFound(ReconcileError):
    """A difference id or a day that the state database does not know."""

    code = "not_found"
