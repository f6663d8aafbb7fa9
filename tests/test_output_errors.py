"""A read-only, impossible or full output location is one line, exit 2 (choose another location) or 1
(a write failed), never a traceback: before the stages, inside them, and inside OpenVINO's export, which
says only "basic_ios::clear: iostream error". Tests run as root (chmod stops nothing), so the disk is
simulated at the OS boundary: a path through a regular file, or os calls that raise the errno."""

from __future__ import annotations

import errno
import json
import os
import types
from pathlib import Path

import pytest

from pofa_openvino import pipeline, rundir, stages
from pofa_openvino.cli import main
from pofa_openvino.errors import OutputError, os_failure

OPENVINO_DISK_FULL = ("Exception from src/core/src/pass/serialize.cpp:1316:\n"
                      "Exception from src/core/src/pass/serialize.cpp:1209:\nbasic_ios::clear: iostream error\n")


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A recipe over a model directory the fake stages never load."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: disk\nmodel: {{name_or_path: {model}}}\ndata: {{dataset: builtin:sentiment}}\n"
                    "export: {}\n")
    return path


def _run(recipe: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["--quiet", "run", str(recipe), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("error, path, expected, code", [
    (OSError(errno.ENOSPC, "No space left on device"), "/r/report.json",
     "no space left on device while writing /r/report.json", 1),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/r/x"), None, "disk quota exceeded while writing /r/x", 1),
    (OSError(errno.EROFS, "Read-only file system", "/r"), None, "/r: read-only file system; choose another", 2),
    (PermissionError(errno.EACCES, "Permission denied", "/r"), None, "/r: permission denied", 2),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/r"), None,
     "/f/r: a part of the path is a file, not a directory", 2),
    (FileExistsError(errno.EEXIST, "File exists", "/f"), None, "/f: exists and is not a directory", 2),
    (OSError(errno.EIO, "Input/output error", "/r/x"), None, "/r/x: Input/output error", 1),
    (OSError("a message\nover two lines"), None, "OSError: a message over two lines", 1),
])
def test_every_os_error_is_one_line_with_its_exit_code(error, path, expected, code):
    failure = os_failure(error, path)
    assert isinstance(failure, OutputError) and str(failure).startswith(expected) and failure.exit_code == code


def test_an_output_directory_under_a_file_is_one_line_exit_2(recipe, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = _run(recipe, blocker / "run", capsys)
    assert code == 2 and err == f"{blocker / 'run'}: a part of the path is a file, not a directory; choose " \
                                "another output location"
    code, err = _run(recipe, blocker, capsys)
    assert code == 2 and err == f"{blocker}: exists and is not a directory; choose another output location"


def test_a_read_only_output_directory_is_one_line_exit_2(recipe, tmp_path, capsys, monkeypatch):
    out, real_mkdir = tmp_path / "readonly" / "run", os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(out.parent)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, err = _run(recipe, out, capsys)
    assert code == 2 and err.endswith(": read-only file system; choose another output location")
    assert err.startswith(str(out.parent)), err


def _full_disk(monkeypatch) -> None:
    """Every file the run directory code writes fails as a full disk does: at ``write``, naming no file."""

    class Full:
        def __init__(self, fd: int, *args, **kwargs):
            os.close(fd)

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

    monkeypatch.setattr(rundir, "os", types.SimpleNamespace(**{**vars(os), "fdopen": Full}))


def test_a_full_disk_outside_a_stage_names_the_file(recipe, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _full_disk(monkeypatch)
    code, err = _run(recipe, out, capsys)
    assert code == 1 and err == f"error: no space left on device while writing {out / 'recipe.yaml'}"
    assert not list(out.glob(".*.tmp"))  # no half-written temporary file is left


def _stages(monkeypatch, export_ir) -> None:
    """The pipeline with a load stage that loads nothing, then the real export stage over ``export_ir``."""
    def load(ctx: stages.StageContext) -> stages.StageOutput:
        return stages.StageOutput(outputs={"model_path": str(ctx.recipe.model.name_or_path)})

    monkeypatch.setattr(pipeline, "STAGES", (pipeline.Stage("load", ("task", "model", "data"), load),
                                             pipeline.Stage("export", (), stages.export)))
    monkeypatch.setattr("pofa_openvino.export.export_ir", export_ir)


def _export_fails(error: BaseException):
    def export_ir(model_dir: str, out: Path, task: str) -> None:
        (out / "openvino_model.bin").write_bytes(b"\0" * 1024)  # the part written before the disk filled
        raise error

    return export_ir


def test_openvino_iostream_error_on_a_full_disk_is_said_as_such(recipe, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _stages(monkeypatch, _export_fails(RuntimeError(OPENVINO_DISK_FULL)))
    seen = []
    monkeypatch.setattr(rundir, "free_bytes", lambda folder: seen.append(folder) or 4096)
    code, err = _run(recipe, out, capsys)
    assert code == 1 and err == (f"error: stage export failed: no space left on device while writing "
                                 f"{out / 'openvino-fp32'} (4,096 bytes free). Earlier stages are kept in {out}; "
                                 "fix the cause and rerun with --resume")
    assert seen[0] == out / ".openvino-fp32.partial"  # measured before the partial files were removed
    assert not (out / ".openvino-fp32.partial").exists() and not (out / "openvino-fp32").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["export"]["status"] == "failed"
    assert manifest["stages"]["export"]["error"].startswith("no space left on device")


def test_an_iostream_error_with_space_left_stays_the_error_it_was_on_one_line(recipe, tmp_path, capsys,
                                                                             monkeypatch):
    out = tmp_path / "run"
    _stages(monkeypatch, _export_fails(RuntimeError(OPENVINO_DISK_FULL)))
    code, err = _run(recipe, out, capsys)
    assert code == 1 and err.startswith("error: stage export failed: RuntimeError: Exception from src/core/src/pass/"
                                        "serialize.cpp:1316: Exception from") and "iostream error. Earlier" in err


def test_a_full_disk_inside_a_stage_names_its_directory(recipe, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _stages(monkeypatch, _export_fails(OSError(errno.ENOSPC, "No space left on device")))
    code, err = _run(recipe, out, capsys)
    assert code == 1 and err.startswith(f"error: stage export failed: no space left on device while writing "
                                        f"{out / 'openvino-fp32'}. Earlier stages are kept")


def test_the_manifest_itself_failing_on_the_full_disk_does_not_hide_the_stage_error(recipe, tmp_path, capsys,
                                                                                     monkeypatch):
    out = tmp_path / "run"

    def export_ir(model_dir: str, out_dir: Path, task: str) -> None:
        _full_disk(monkeypatch)  # from here on the manifest cannot be written either
        raise OSError(errno.ENOSPC, "No space left on device")

    _stages(monkeypatch, export_ir)
    code, err = _run(recipe, out, capsys)
    assert code == 1 and err.startswith("error: stage export failed: no space left on device while writing")


def test_any_verb_writing_to_an_impossible_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "recipe.yaml"
    assert main(["init", "--model", "offline:all-MiniLM-L6-v2", "--task", "sst2", "-o", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{blocker}: exists and is not a directory; choose another output location", err


def test_an_unreadable_input_is_not_called_an_output_location(tmp_path):
    """A permission error on a file the run reads names the file, without sending the user elsewhere."""
    from pofa_openvino.errors import os_failure

    data, run = tmp_path / "train.csv", tmp_path / "run"
    denied = PermissionError(errno.EACCES, "Permission denied", str(data))
    assert str(os_failure(denied, output=run)) == f"{data}: permission denied"
    inside = PermissionError(errno.EACCES, "Permission denied", str(run / "checkpoint"))
    assert str(os_failure(inside, output=run)).endswith("permission denied; choose another output location")
