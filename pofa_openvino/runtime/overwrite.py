"""The one overwrite policy of every directory a command writes (a run, a benchmark report, a bundle, an
OVMS repository): a tool removes only what it wrote, as the record it left there says, and refuses a
non-empty directory it did not write. ``force`` (the commands' ``--force``) replaces an earlier write
of the same kind, keeping what others added beside it (a ``sole`` kind, such as a bundle, refuses
instead); in a directory of someone else's files it lets a ``shared`` kind write beside them, never over
one of their names, and changes nothing for the others."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import PofaError, os_failure

ELSEWHERE = "choose another output directory (-o)"


@dataclass(frozen=True)
class OutputKind:
    """What one command writes into its output directory, and how it knows an earlier write of its own."""

    what: str                                    # "a run", "an OVMS repository": as messages name it
    written: Callable[[Path], list[str] | None]  # the entries an earlier write recorded there; None: not ours
    names: tuple[str, ...] = ()                  # the entries it may write (a shared directory must lack them)
    shared: bool = False                         # with force, it may write into a directory of others' files
    sole: bool = False                           # it must be alone in its directory (a bundle lists every file)
    ignored: tuple[str, ...] = ()                # entries that leave a directory empty (a run's lock)

    @property
    def noun(self) -> str:
        return self.what.split(" ", 1)[1]


def check_output(out: Path, kind: OutputKind, force: bool) -> list[str]:
    """The entries of an earlier write of ``kind`` that ``out`` may lose (empty: nothing to replace), or
    a one-line :class:`PofaError` saying why ``out`` is refused. Changes nothing."""
    if out.exists() and not out.is_dir():
        raise os_failure(FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(out)), output=out)
    present = sorted(p.name for p in out.iterdir() if p.name not in kind.ignored) if out.is_dir() else []
    if not present:
        return []
    ours = kind.written(out)
    if ours is None:
        clash = [name for name in kind.names if name in present]
        if force and kind.shared and not clash:
            return []
        if force and kind.shared:
            raise PofaError(f"{out} holds no {kind.noun} of this tool, but names {kind.what} would write: "
                            f"{', '.join(clash)}; --force replaces only {kind.what}'s own files: {ELSEWHERE}")
        beside = f" or pass --force to write {kind.what} beside them" if kind.shared else ""
        raise PofaError(f"{out} is not empty and holds no {kind.noun} of this tool; {ELSEWHERE}{beside}")
    if not force:
        raise PofaError(f"{out} holds {kind.what}; {ELSEWHERE} or pass --force to replace it")
    ours = [name for name in ours if _plain(name) and name in present]
    others = [name for name in present if name not in ours]
    if others and kind.sole:
        raise PofaError(f"{out} holds {kind.what} and files it did not write ({', '.join(others)}); --force "
                        f"replaces only {kind.what}: {ELSEWHERE}")
    return ours


def claim_output(out: Path, kind: OutputKind, force: bool) -> None:
    """Make ``out`` ready for ``kind`` under the policy: what :func:`check_output` allows is removed
    (a link, never what it points to) and the directory made."""
    for name in check_output(out, kind, force):
        remove_entry(out / name)
    out.mkdir(parents=True, exist_ok=True)


def remove_entry(target: Path) -> None:
    """A file, a directory tree, or a link (the link only: what it points to is not this tool's)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def marker_record(marker: str) -> Callable[[Path], list[str] | None]:
    """The ``written`` reader of a kind that records its entries in a ``marker`` file of its own (see
    :func:`write_marker`); the marker is one of them."""
    def written(out: Path) -> list[str] | None:
        try:
            listed = json.loads((out / marker).read_text(encoding="utf-8"))["written"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return [*listed, marker] if isinstance(listed, list) else None

    return written


def write_marker(out: Path, marker: str, written: list[str], **about: str) -> None:
    """Record, before writing them, the entries a command will write into ``out``: a write that fails
    half-way still leaves a directory that ``--force`` may replace."""
    out.mkdir(parents=True, exist_ok=True)
    (out / marker).write_text(json.dumps({"written": written, **about}) + "\n", encoding="utf-8")


def _plain(name: object) -> bool:
    """Only plain names at the top level: a record never sends a removal elsewhere."""
    return isinstance(name, str) and Path(name).name == name and name not in ("", ".", "..")
