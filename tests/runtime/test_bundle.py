"""The edge bundle on the receiving side: verified, run with the base install alone (nothing loaded
outside the runtime's allow-list) with the same predictions as the toolkit, and refused, naming the
problem, when altered or unsafe. The bundle is the session's ``packaged`` run (conftest)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import clean_venv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pofa_openvino.cli import main
from pofa_openvino.runtime.bundle import (
    FORMAT,
    MANIFEST,
    Bundle,
    BundleError,
    extract,
    is_bundle,
    names_bundle_format,
    verify,
)

pytestmark = pytest.mark.slow

TEXTS = ["the plot was gripping .", "not good at all", "a dull , slow film", "the acting was wonderful"]


def _toolkit_predictions(run_dir: Path, texts: list[str]) -> np.ndarray:
    """Logits the way the toolkit computes them: the HF tokenizer and the run's INT8 IR."""
    from transformers import AutoTokenizer

    from pofa_openvino.runtime.model import SparseModel

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "openvino")
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
    return SparseModel(run_dir / "openvino").infer(dict(inputs))["logits"]


def test_bundle_predicts_what_the_toolkit_predicts(packaged):
    bundle = Bundle(packaged.run_dir / "package")
    predictions = bundle.predict(TEXTS)
    logits = _toolkit_predictions(packaged.run_dir, TEXTS)
    assert [p["label"] for p in predictions] == [bundle.manifest["labels"][i] for i in logits.argmax(-1)]
    outputs, _ = bundle.outputs(TEXTS)
    np.testing.assert_allclose(outputs["logits"], logits, atol=1e-4)
    with pytest.raises(BundleError, match="single texts"):
        bundle.predict(TEXTS[:1], ["a second text"])


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install pofa-openvino` (no extras): what an edge box installs. Its bin directory."""
    return clean_venv(tmp_path_factory.mktemp("base") / "venv")


def test_runner_needs_only_the_base_install(packaged, base_venv, tmp_path):
    """No torch in the base install, and the same predictions as the toolkit's venv."""
    python = base_venv / "python"
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0
    assert subprocess.run([str(python), "-c", "import transformers"], capture_output=True).returncode != 0
    ran = subprocess.run([str(python), "-m", "pofa_openvino", "predict", str(packaged.run_dir / "package"), *TEXTS],
                         capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    remote = [json.loads(line) for line in ran.stdout.splitlines()]
    local = Bundle(packaged.run_dir / "package").predict(TEXTS)
    assert [r["text"] for r in remote] == TEXTS
    assert [r["label"] for r in remote] == [p["label"] for p in local]
    np.testing.assert_allclose([r["score"] for r in remote], [p["score"] for p in local], atol=1e-5)
    verified = subprocess.run([str(base_venv / "pofa-openvino"), "verify", str(packaged.run_dir / "package")],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and "ok" in verified.stdout, verified.stderr


# Top-level modules the runtime may load besides the standard library, found by looking in the base venv.
RUNTIME_MODULES = {"pofa_openvino", "numpy", "openvino", "openvino_tokenizers",
                   "cython_runtime",                    # numpy's compiled modules (with a _cython_X_Y_Z module)
                   "openvino_telemetry", "__mp_main__"}  # what `import openvino` loads (the latter: multiprocessing's)


TOOLKIT_MODULES = {"pydantic", "yaml", "rich", "torch", "transformers"}


PROBE = """
import contextlib, io, json, re, sys
before = set(sys.modules)  # what the interpreter loaded (a venv's .pth hooks included)
from pofa_openvino.runtime.bundle import Bundle, verify
from pofa_openvino.cli import main
verify(sys.argv[1])
Bundle(sys.argv[1]).predict(["a fine film"])
with contextlib.redirect_stdout(io.StringIO()):
    codes = [main(["predict", sys.argv[1], "a fine film"]), main(["verify", sys.argv[1]])]
loaded = {name.partition(".")[0] for name in set(sys.modules) - before}
print(json.dumps({"codes": codes, "loaded": sorted(loaded - set(sys.stdlib_module_names)
                                                   - {m for m in loaded if re.fullmatch(r"_cython_[0-9_]+", m)})}))
"""


def test_the_runtime_loads_nothing_outside_its_allow_list(packaged, base_venv):
    """`Bundle`, `verify` and the `predict`/`verify` verbs in the base install: from `sys.modules`, only the
    standard library, openvino, openvino-tokenizers, numpy (and what they import) and this package."""
    ran = subprocess.run([str(base_venv / "python"), "-c", PROBE, str(packaged.run_dir / "package")],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    probe = json.loads(ran.stdout.splitlines()[-1])
    assert probe["codes"] == [0, 0]
    outside = set(probe["loaded"]) - RUNTIME_MODULES
    assert not outside, f"the runtime loaded modules outside its allow-list: {sorted(outside)}"
    assert not set(probe["loaded"]) & TOOLKIT_MODULES


@pytest.mark.parametrize("verb", [["validate", "x.yaml"], ["run", "x.yaml"], ["package", "run"]])
def test_a_toolkit_verb_in_the_base_install_is_one_line_naming_the_extra(base_venv, tmp_path, verb):
    ran = subprocess.run([str(base_venv / "pofa-openvino"), *verb], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 2
    (line,) = ran.stderr.splitlines()
    assert line.startswith(f"pofa-openvino {verb[0]} needs the toolkit: pip install 'pofa-openvino[compress]'")


@pytest.fixture
def copy(packaged, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(packaged.run_dir / "package", target)
    return target


def test_a_corrupted_weight_file_is_named(copy):
    weights = copy / "model" / "openvino_model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="^model/openvino_model.bin: sha256 differs"):
        verify(copy)
    weights.write_bytes(bytes(data[:-10]))
    with pytest.raises(BundleError, match="^model/openvino_model.bin: .* bytes, the manifest says"):
        verify(copy)


def test_a_missing_tokenizer_is_named(copy, capsys):
    (copy / "tokenizer" / "openvino_tokenizer.xml").unlink()
    assert main(["verify", str(copy)]) == 1
    assert "tokenizer/openvino_tokenizer.xml: missing" in capsys.readouterr().err


def test_a_manifest_from_another_bundle_is_refused(packaged, copy, tmp_path):
    other = tmp_path / "edge"
    assert main(["package", str(packaged.run_dir), "-o", str(other), "--target", "edge"]) == 0
    assert "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE" not in (other / "runtime_config.json").read_text()
    verify(other)
    shutil.copy2(other / "manifest.json", copy / "manifest.json")
    with pytest.raises(BundleError, match="belongs to another bundle.*runtime_config.json"):
        verify(copy)


def test_a_manifest_of_another_format_version_is_refused(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99"):
        verify(copy)


def _archive(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/absolute.txt", "link"])
def test_unpacking_refuses_members_that_escape(tmp_path, member):
    info = tarfile.TarInfo(member)
    if member == "link":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info.size = 1
    archive = _archive(tmp_path / "evil.tar.gz", [info])
    with pytest.raises(BundleError, match="refused"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def _rewrite_selftest(bundle: Path, change) -> None:
    """Alter selftest.json and re-seal the manifest over it, as someone who edits the bundle would."""
    from pofa_openvino.runtime.digest import sha256_file

    path = bundle / "selftest.json"
    selftest = json.loads(path.read_text())
    change(selftest)
    path.write_text(json.dumps(selftest))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["selftest.json"] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _shift(selftest: dict) -> None:
    selftest["outputs"] = {k: (np.asarray(v) + 1.0).tolist() for k, v in selftest["outputs"].items()}
    selftest["tolerance"] = 1e9


def _nan(selftest: dict) -> None:
    selftest["outputs"] = {k: np.full_like(np.asarray(v, dtype=float), np.nan).tolist()
                           for k, v in selftest["outputs"].items()}


@pytest.mark.parametrize("change", [_shift, _nan])
def test_the_selftest_tolerance_is_the_formats_and_nan_never_passes(copy, change):
    _rewrite_selftest(copy, change)
    with pytest.raises(BundleError, match="^self-test failed: outputs differ from the stored ones by up to"):
        verify(copy)


def _reseal(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _link_the_config(bundle: Path) -> None:
    config = bundle / "model" / "config.json"
    real = bundle.parent / "config.json"
    config.rename(real)
    config.symlink_to(real)


@pytest.mark.parametrize(("alter", "message"), [
    (lambda b: _reseal(b, lambda m: m.update(labels=m["labels"][::-1])),
     r"^manifest.json: labels \['positive', 'negative'\] differ from model/config.json's"),
    (lambda b: _reseal(b, lambda m: m.update(task="question-answering")), "^manifest.json: task 'question-answering'"),
    (lambda b: _reseal(b, lambda m: m["files"].update({"../../etc/hostname": {"bytes": 1, "sha256": "0"}})),
     "^manifest.json: '../../etc/hostname' lies outside the bundle"),
    (lambda b: _reseal(b, lambda m: m.update(files=["model"])), "^manifest.json: `files` is not a mapping"),
    (lambda b: _reseal(b, lambda m: m["files"].update({"README.md": "x"})), "the entry of README.md has no bytes"),
    (_link_the_config, "^model/config.json: a link, not a file of the bundle"),
])
def test_verify_refuses_a_manifest_that_lies_and_links(copy, alter, message):
    alter(copy)
    with pytest.raises(BundleError, match=message):
        verify(copy)


def test_predict_runs_many_texts_in_bounded_batches_and_refuses_bad_bytes(packaged, capsys):
    from pofa_openvino.runtime.bundle import PREDICT_BATCH

    bundle = Bundle(packaged.run_dir / "package")
    texts = (TEXTS * 20)[: 2 * PREDICT_BATCH + 3]
    many = bundle.predict(texts)
    assert len(many) == len(texts) and many[:len(TEXTS)] == bundle.predict(TEXTS)
    assert main(["predict", str(packaged.run_dir / "package"), "fine", "caf\udce9"]) == 2
    assert "text 2 is not valid UTF-8" in capsys.readouterr().err
    assert main(["predict", str(packaged.run_dir / "package"), "one", "two", "--pair", "a"]) == 2
    assert "--pair given 1 times for 2 texts" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(packaged):
    shell = f"{sys.executable} -m pofa_openvino.cli verify {packaged.run_dir / 'package'} | head -c 1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def _files(*names: str, size: int = 1) -> list[tarfile.TarInfo]:
    members = []
    for name in names:
        info = tarfile.TarInfo(name)
        info.size = size
        members.append(info)
    return members


@pytest.mark.parametrize(("members", "limits", "message"), [
    (_files("a", "b", "c", "d"), {"MAX_MEMBERS": 3}, "4 members; a bundle has far fewer"),
    (_files("a", "b", size=8), {"MAX_UNPACKED_BYTES": 10}, "would unpack to 16 bytes"),
    (_files("model", "model/x"), {}, "member 'model/x' collides with the file 'model'"),
    (_files("model/x", "model/x"), {}, "member 'model/x' collides with the file 'model/x'"),
])
def test_an_archive_is_judged_by_its_headers_before_anything_is_written(tmp_path, monkeypatch, members, limits,
                                                                        message):
    import pofa_openvino.runtime.bundle as bundle_module

    for name, value in limits.items():
        monkeypatch.setattr(bundle_module, name, value)
    archive = _archive(tmp_path / "a.tar.gz", members)
    with pytest.raises(BundleError, match=message):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_cut_short_archive_is_one_line(packaged, tmp_path):
    whole = (packaged.run_dir / "package.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BundleError, match="not a readable archive, or cut short"):
        verify(cut)


BUNDLE_FILES = ["manifest.json", "selftest.json", "runtime_config.json", "model/config.json",
                "model/openvino_model.xml", "model/openvino_model.bin", "tokenizer/openvino_tokenizer.xml"]


@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_mutated_bundle_verifies_or_is_one_bundle_error(packaged, tmp_path_factory, data):
    """Any file of a bundle cut, flipped or padded (and the manifest re-sealed over it, or not): verify
    passes or raises one BundleError line, never another exception."""
    from pofa_openvino.runtime.digest import sha256_file

    bundle = tmp_path_factory.mktemp("mutated") / "bundle"
    shutil.copytree(packaged.run_dir / "package", bundle)
    name = data.draw(st.sampled_from(BUNDLE_FILES))
    raw = bytearray((bundle / name).read_bytes())
    at = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
    how = data.draw(st.sampled_from(["cut", "flip", "pad", "empty", "json"]))
    if how == "cut":
        raw = raw[:at]
    elif how == "flip" and raw:
        raw[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    elif how == "pad":
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    elif how == "empty":
        raw = bytearray()
    else:
        raw = bytearray(json.dumps(data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                                       st.lists(st.integers(), max_size=2),
                                                       st.dictionaries(st.text(max_size=4), st.integers(),
                                                                       max_size=2)))).encode())
    (bundle / name).write_bytes(bytes(raw))
    if name != "manifest.json" and data.draw(st.booleans()):
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["files"][name] = {"bytes": len(raw), "sha256": sha256_file(bundle / name)}
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    try:
        verify(bundle)
    except BundleError as error:
        assert "\n" not in str(error), str(error)


@pytest.mark.parametrize(("manifest", "ours"), [
    (json.dumps({"format": FORMAT}), True),
    (json.dumps({"format": FORMAT}).encode(), True),
    (json.dumps({"format": "some-other-format"}), False),
    (json.dumps([FORMAT]), False),
    ("{not json", False),
    (b"\xff\xfe", False),
    ("", False),
])
def test_what_counts_as_this_tools_bundle_is_one_rule(tmp_path, manifest, ours):
    assert names_bundle_format(manifest) is ours
    folder = tmp_path / "bundle"
    folder.mkdir()
    assert is_bundle(folder) is False  # no manifest at all
    manifest_file = folder / MANIFEST
    manifest_file.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    assert is_bundle(folder) is ours
