"""Errors the CLI turns into one line and an exit code, never a traceback."""

from __future__ import annotations


class PofaError(Exception):
    """A user-facing failure: the message alone says what went wrong and what to do."""

    exit_code = 1


class RecipeError(PofaError):
    """A recipe (or a --set override) is invalid: ``file:line: key: message``."""

    exit_code = 2

    def __init__(self, message: str, *, source: str = "", line: int | None = None, key: str = ""):
        self.source, self.line, self.key, self.detail = source, line, key, message
        where = source + (f":{line}" if line else "")
        parts = [p for p in (where, key if key.isprintable() else repr(key), message) if p]
        super().__init__(" ".join(": ".join(parts).splitlines()))  # one line, whatever the recipe's text holds


class StageError(PofaError):
    """A pipeline stage failed; earlier stages are kept and the run can resume."""


class DataError(PofaError):
    """Task data is unusable: the message names the file, the row and the column."""

    exit_code = 2


class UsageError(PofaError):
    """The command line's options do not go together (or name something that does not exist)."""

    exit_code = 2


def listed(values: list[str], limit: int = 10) -> str:
    """Values for a one-line message: the first ``limit`` and how many there are in all."""
    shown = ", ".join(map(str, values[:limit]))
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"
