"""User-facing errors: every bad input names its file, line and field, and exits with code 2."""
from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input or configuration (exit code 2, no traceback)."""

    exit_code = 2


class InputError(UserError):
    """A problem in an input file, located by file, line (1-based) and field."""

    def __init__(self, path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


class ConfigError(UserError):
    """A bad configuration value or config file."""
