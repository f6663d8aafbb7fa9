"""The run directory: atomic files, the manifest, and what a run may replace (see :mod:`.runtime.overwrite`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import OutputError, PofaError, disk_error, os_failure
from .runtime.digest import sha256_file
from .runtime.overwrite import OutputKind, claim_output


@dataclass(frozen=True)
class RunLayout:
    """The names of a run directory's entries, in the order a run writes them. Why one object: the
    stages, the pipeline, the ``bench`` and ``package`` commands and ``--force`` must agree on them."""

    recipe: str = "recipe.yaml"           # the resolved recipe the run executed
    manifest: str = "manifest.json"       # stages, fingerprints, outputs, what the run wrote
    report_json: str = "report.json"
    report_md: str = "report.md"
    pretrain_state: str = "pretrain-state"  # resumable state of prune-once pre-training
    pretrained: str = "pretrained"        # the pruned-once checkpoint
    teacher_state: str = "teacher-state"
    teacher: str = "teacher"              # the teacher this run fine-tuned (distillation.teacher: auto)
    train_state: str = "train-state"
    checkpoint: str = "checkpoint"        # the fine-tuned (pruned) model
    ir_fp32: str = "openvino-fp32"        # the exported FP32 IR
    ir: str = "openvino"                  # the deployable IR with runtime_config.json
    benchmark: str = "benchmark"          # charts
    package: str = "package"              # the edge bundle
    archive: str = "package.tar.gz"
    smoke: str = "smoke"                  # --smoke's generated model and rows

    def entries(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


LAYOUT = RunLayout()
# Everything a run may write at its top level. --force removes, of these, only what the previous run's
# manifest says it wrote (``written``), and never anything in a directory that holds no run.
RUN_ENTRIES = LAYOUT.entries()
MANIFEST_FORMAT = 1
LOCK = ".pofa-lock"  # held (flock) while a run writes into the directory; holds the writer's pid


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: readers never see half a file. A
    failure names ``path`` (a failed ``write`` names no file, a failed ``mkstemp`` the temporary one), or
    the directory that could not be made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces ``final``, on failure it is removed. A
    failure that is the disk's (see :func:`write_failure`) is said as such, judged before the removal
    frees the space again."""
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException as exc:
        failure = write_failure(exc, final, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if failure is not None and failure is not exc:
            raise failure from exc
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


LOW_SPACE = 16 << 20  # bytes: a write that failed with less than this free failed for want of space
# What C++ writers say when a write fails, without an errno: OpenVINO's serializer and torch.save.
_WRITER_FAILURE = re.compile(r"iostream error|file write failed|failed writing|no space left", re.IGNORECASE)


def write_failure(exc: BaseException, target: Path, probe: Path | None = None) -> OutputError | None:
    """What a failed write into ``target`` means for the user, or None when it is not the disk's doing.
    An ``OSError`` says it with its errno; OpenVINO says only "basic_ios::clear: iostream error" (and
    torch "file write failed"), so then the disk of ``probe`` (default ``target``) is looked at: nearly
    full, or not writable."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, OSError):
        return os_failure(exc, target, target) if disk_error(exc) else None
    if not _WRITER_FAILURE.search(str(exc)):
        return None
    folder = next((p for p in (probe or target, *(probe or target).parents) if p.exists()), Path("/"))
    free = free_bytes(folder)
    if free < LOW_SPACE:
        return OutputError(f"no space left on device while writing {target} ({free:,} bytes free)")
    if not os.access(folder, os.W_OK):
        return OutputError(f"{target}: not writable (a read-only file system?); choose another output location",
                           exit_code=2)
    return None


def free_bytes(folder: Path) -> int:
    """Bytes this process may still write on ``folder``'s file system."""
    return shutil.disk_usage(folder).free


def sha256_tree(path: Path) -> str:
    """One digest for a file or every file of a directory (names and contents)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """One run at a time in ``run_dir``: a second gets an error naming the first one's pid. The lock
    is the kernel's (flock), so it ends with its process however that ends."""
    try:
        import fcntl
    except ImportError:  # not on this OS: no lock
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise PofaError(f"{run_dir} is in use by another run (pid {handle.read().strip() or 'unknown'}); wait "
                            "for it to finish or choose another output directory (-o)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def outputs_present(run_dir: Path, outputs: dict[str, Any]) -> bool:
    """Whether the run entries a finished stage recorded as its outputs are still there."""
    return all((run_dir / value).exists() for value in outputs.values()
               if isinstance(value, str) and value in RUN_ENTRIES)


def claim(run_dir: Path, recipe_name: str, resume: bool, force: bool) -> dict[str, Any] | None:
    """Decide whether ``run_dir`` may be used; return the previous manifest when resuming. A finished
    run asks for ``resume`` or ``force``; everything else follows the overwrite policy (:data:`RUN_OUTPUT`)."""
    previous = _manifest_or_none(run_dir / LAYOUT.manifest)
    if previous is not None and not force:
        if previous.get("recipe_name") != recipe_name:
            raise PofaError(f"{run_dir} is not empty and holds a run of recipe {previous.get('recipe_name')!r}; "
                            "choose another output directory (-o) or pass --force to replace the run's files in it")
        if resume:
            return previous
        raise PofaError(f"{run_dir} already holds a run of recipe {recipe_name!r}: add --resume to continue "
                        "it (finished stages are reused) or --force to start over")
    claim_output(run_dir, RUN_OUTPUT, force)
    return None


def written_entries(run_dir: Path) -> list[str]:
    """What the run has written at its top level so far (recorded in its manifest)."""
    return [entry for entry in RUN_ENTRIES if (run_dir / entry).exists() or (run_dir / entry).is_symlink()]


def _run_record(run_dir: Path) -> list[str] | None:
    """What an earlier run recorded as written (manifests before ``written`` were all runs' own)."""
    previous = _manifest_or_none(run_dir / LAYOUT.manifest)
    return None if previous is None else [e for e in previous.get("written", RUN_ENTRIES) if e in RUN_ENTRIES]


RUN_OUTPUT = OutputKind("a run", _run_record, names=RUN_ENTRIES, shared=True, ignored=(LOCK,))


def _manifest_or_none(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None
