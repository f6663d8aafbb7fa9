"""Errors the CLI turns into one line and an exit code, never a traceback."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


class OutputError(PofaError):
    """A file could not be written for a reason outside the tool: a full disk (exit 1: the write failed),
    or a read-only, forbidden or impossible location (exit 2: choose another one)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# What the disk lacked: the write failed (exit 1).
FULL = {errno.ENOSPC: "no space left on device", getattr(errno, "EDQUOT", -1): "disk quota exceeded",
        errno.EFBIG: "file too large for the file system"}
# Where the output cannot go: the location is wrong (exit 2).
LOCATION = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted", errno.ENOTDIR: "a part of the path is a file, not a directory",
            errno.EEXIST: "exists and is not a directory", errno.EISDIR: "is a directory",
            errno.ENAMETOOLONG: "name too long"}


def os_failure(exc: OSError, path: str | Path | None = None, output: Path | None = None) -> OutputError:
    """One line for an ``OSError`` (``path`` names the file when the error does not, as after a
    failed ``write``): ``no space left on device while writing PATH`` or ``PATH: read-only file system``.
    The advice to choose another output location comes only where the failing path is ``output``, in
    it or on the way to it (a permission error on an input file is that file's problem)."""
    where = exc.filename or path
    if exc.errno in FULL:
        return OutputError(f"{FULL[exc.errno]} while writing {where or 'a file'}")
    if exc.errno in LOCATION and where:
        always = exc.errno in (errno.EROFS, errno.EEXIST)  # only outputs meet these
        hint = "; choose another output location" if always or _on_the_way(where, output) else ""
        return OutputError(f"{where}: {LOCATION[exc.errno]}{hint}", exit_code=2)
    detail = " ".join(str(exc.strerror or exc).split())
    return OutputError(f"{where}: {detail}" if where else f"{type(exc).__name__}: {detail}")


def _on_the_way(where: str | Path, output: Path | None) -> bool:
    if output is None:
        return False
    failing, output = Path(where).absolute(), output.absolute()
    return failing == output or output in failing.parents or failing in output.parents


def disk_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the disk or the output location (not, say, a missing input file)."""
    return isinstance(exc, OSError) and (exc.errno in FULL or exc.errno in LOCATION)


@contextmanager
def os_errors(path: str | Path | None = None, output: Path | None = None) -> Iterator[None]:
    """Any ``OSError`` inside becomes a one-line :class:`OutputError` (``output``: the directory being
    written, see :func:`os_failure`); a broken pipe is left to the CLI, which ends quietly on it."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise os_failure(exc, path, output) from exc


def listed(values: list[str], limit: int = 10) -> str:
    """Values for a one-line message: the first ``limit`` and how many there are in all."""
    shown = ", ".join(map(str, values[:limit]))
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"
