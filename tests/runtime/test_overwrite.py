"""One overwrite policy for every output directory: the cases as a table over the four kinds of output
(a run, a benchmark report, a bundle, an OVMS repository), on directories made by hand."""

import json
from pathlib import Path

import pytest

from pofa_openvino.bench_target import BENCH_OUTPUT
from pofa_openvino.bench_target import MARKER as BENCH_MARKER
from pofa_openvino.errors import OutputError, PofaError
from pofa_openvino.package import BUNDLE_OUTPUT
from pofa_openvino.rundir import LOCK, MANIFEST_FORMAT, RUN_OUTPUT
from pofa_openvino.runtime.bundle import FORMAT
from pofa_openvino.runtime.overwrite import check_output, claim_output, write_marker
from pofa_openvino.runtime.ovms import MARKER as OVMS_MARKER
from pofa_openvino.runtime.ovms import OVMS_OUTPUT


def _files(out: Path, names: list[str]) -> None:
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(name)


def _run(out: Path) -> list[str]:
    _files(out, ["report.md", "checkpoint/model.safetensors"])
    written = ["manifest.json", "report.md", "checkpoint"]
    (out / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT, "recipe_name": "r", "written": written}))
    return written


def _bench(out: Path) -> list[str]:
    write_marker(out, BENCH_MARKER, ["report.json", "benchmark"])
    _files(out, ["report.json", "benchmark/size.png"])
    return ["report.json", "benchmark", BENCH_MARKER]


def _bundle(out: Path) -> list[str]:
    _files(out, ["model/openvino_model.xml", "README.md"])
    listed = {name: {"bytes": 1, "sha256": "0"} for name in ("model/openvino_model.xml", "README.md")}
    (out / "manifest.json").write_text(json.dumps({"format": FORMAT, "files": listed}))
    return ["README.md", "manifest.json", "model"]


def _ovms(out: Path) -> list[str]:
    write_marker(out, OVMS_MARKER, ["config.json", "README.md", "m"])
    _files(out, ["config.json", "README.md", "m/1/model.xml"])
    return ["config.json", "README.md", "m", OVMS_MARKER]


KINDS = [(RUN_OUTPUT, _run), (BENCH_OUTPUT, _bench), (BUNDLE_OUTPUT, _bundle), (OVMS_OUTPUT, _ovms)]
IDS = ["run", "bench", "bundle", "ovms"]


def _tree(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*"))


@pytest.fixture(params=KINDS, ids=IDS)
def kind(request):
    return request.param


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("state", ["absent", "empty"])
def test_a_new_or_empty_directory_is_taken(kind, state, force, tmp_path):
    out = tmp_path / "out"
    if state == "empty":
        out.mkdir()
    claim_output(out, kind[0], force)
    assert out.is_dir() and not any(out.iterdir())


def test_our_own_directory_needs_force_then_loses_only_what_we_wrote(kind, tmp_path):
    output, write = kind
    out = tmp_path / "out"
    out.mkdir()
    written = write(out)
    before = _tree(out)
    with pytest.raises(PofaError, match=f"^{out} holds {output.what}; choose another output directory \\(-o\\) or "
                                        "pass --force to replace it$"):
        claim_output(out, output, force=False)
    assert _tree(out) == before
    assert sorted(check_output(out, output, force=True)) == sorted(written)
    claim_output(out, output, force=True)
    assert not any(out.iterdir())


@pytest.mark.parametrize("force", [False, True])
def test_a_foreign_directory_is_refused_untouched(kind, force, tmp_path):
    output = kind[0]
    out = tmp_path / "out"
    _files(out, ["notes.txt"])
    if force and output.shared:  # a run or a benchmark writes beside the user's files
        claim_output(out, output, force)
    else:
        beside = f" or pass --force to write {output.what} beside them" if output.shared else ""
        with pytest.raises(PofaError, match=f"^{out} is not empty and holds no {output.noun} of this tool; choose "
                                            f"another output directory \\(-o\\){beside}$"):
            claim_output(out, output, force)
    assert _tree(out) == ["notes.txt"]


@pytest.mark.parametrize("kind", KINDS[:2], ids=IDS[:2])
def test_force_never_writes_over_a_foreign_name(kind, tmp_path):
    output = kind[0]
    out = tmp_path / "out"
    _files(out, ["report.md" if output is RUN_OUTPUT else "report.json"])
    with pytest.raises(PofaError, match=f"holds no {output.noun} of this tool, but names {output.what} would write: "
                                        "report"):
        claim_output(out, output, force=True)
    assert len(_tree(out)) == 1


def test_force_keeps_a_file_added_beside_an_earlier_write_and_a_bundle_refuses_it(kind, tmp_path):
    output, write = kind
    out = tmp_path / "out"
    out.mkdir()
    write(out)
    _files(out, ["notes.txt"])
    if not output.sole:
        claim_output(out, output, force=True)
        assert _tree(out) == ["notes.txt"]
    else:  # a bundle is a directory of its own: verify refuses a file its manifest does not list
        before = _tree(out)
        with pytest.raises(PofaError, match=f"holds {output.what} and files it did not write \\(notes.txt\\)"):
            claim_output(out, output, force=True)
        assert _tree(out) == before


@pytest.mark.parametrize("force", [False, True])
def test_a_file_in_place_of_the_directory_is_one_line_exit_2(kind, force, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(OutputError, match=f"^{out}: exists and is not a directory; choose another output location$") \
            as raised:
        claim_output(out, kind[0], force)
    assert raised.value.exit_code == 2 and out.read_text() == "a file"


def test_a_record_never_sends_a_removal_elsewhere_and_a_link_goes_not_its_target(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    _files(elsewhere, ["keep.txt"])
    _files(tmp_path, ["outside.txt"])
    write_marker(out, OVMS_MARKER, ["../outside.txt", str(tmp_path / "outside.txt"), "link"])
    (out / "link").symlink_to(elsewhere)
    claim_output(out, OVMS_OUTPUT, force=True)
    assert not any(out.iterdir())
    assert (elsewhere / "keep.txt").is_file() and (tmp_path / "outside.txt").is_file()


def test_a_runs_lock_leaves_its_directory_empty(tmp_path):
    out = tmp_path / "out"
    _files(out, [LOCK])
    claim_output(out, RUN_OUTPUT, force=False)
    assert _tree(out) == [LOCK]
