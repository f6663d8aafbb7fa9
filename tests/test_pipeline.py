"""The stage runner on tiny generated models: run, report, resume, refuse to clobber, survive a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe

from pofa_openvino import PofaError, run
from pofa_openvino.cli import main
from pofa_openvino.errors import StageError
from pofa_openvino.rundir import RUN_ENTRIES

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_run_writes_the_contracted_run_directory(model, tmp_path, request):
    result = run(tiny_recipe(request.getfixturevalue(model)), output_dir=tmp_path / "run")
    run_dir = result.run_dir
    assert result.ran == ["load", "train", "evaluate"] and result.reused == []
    for entry in ("recipe.yaml", "manifest.json", "report.json", "report.md", "checkpoint/config.json",
                  "checkpoint/model.safetensors", "checkpoint/tokenizer.json"):
        assert (run_dir / entry).exists(), entry
    report = json.loads((run_dir / "report.json").read_text())
    assert {"recipe", "model", "sparsity", "accuracy", "timings"} <= set(report)
    assert report["training"]["steps"] == 8
    assert 0.0 <= report["accuracy"]["torch_fp32"]["accuracy"] <= 1.0
    layers = {layer["name"]: layer for layer in report["sparsity"]["layers"]}
    assert not layers["classifier"]["prunable"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(stage["status"] == "done" for stage in manifest["stages"].values())
    assert manifest["versions"]["torch"] and manifest["inputs"]
    resolved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert resolved["training"]["max_steps"] == 8
    # Everything the run wrote is an entry the run layout names (what --force may remove).
    assert {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} <= set(RUN_ENTRIES)


def test_resume_reuses_unchanged_stages_and_redoes_changed_ones(tiny_bert, tmp_path):
    recipe, out = tiny_recipe(tiny_bert), tmp_path / "run"
    first = run(recipe, output_dir=out)
    with pytest.raises(PofaError, match="add --resume to continue it"):
        run(recipe, output_dir=out)
    again = run(recipe, output_dir=out, resume=True)
    assert again.ran == [] and again.reused == ["load", "train", "evaluate"]
    assert again.report["accuracy"] == first.report["accuracy"]
    changed = run(recipe, output_dir=out, resume=True, overrides=["training.learning_rate=5e-4"])
    assert changed.reused == ["load"] and changed.ran == ["train", "evaluate"]


def test_a_setting_added_with_a_default_keeps_finished_stages_reusable(tiny_bert):
    from pofa_openvino.pipeline import STAGES, _fingerprint
    from pofa_openvino.recipe import TrainingSection, load_recipe

    class NewerTraining(TrainingSection):  # what a later release adding a setting looks like
        label_smoothing_factor: float = 0.0

    recipe = load_recipe(tiny_recipe(tiny_bert))
    newer = recipe.model_copy(update={"training": NewerTraining(**recipe.training.model_dump())})
    changed = recipe.model_copy(update={"training": NewerTraining(**recipe.training.model_dump(),
                                                                  label_smoothing_factor=0.1)})
    train = next(stage for stage in STAGES if stage.name == "train")
    assert _fingerprint(train, newer, "before") == _fingerprint(train, recipe, "before")
    assert _fingerprint(train, changed, "before") != _fingerprint(train, recipe, "before")


def test_a_foreign_directory_is_never_clobbered(tiny_bert, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PofaError, match="not empty and holds no run of this tool"):
        run(tiny_recipe(tiny_bert), output_dir=out, resume=True)
    run(tiny_recipe(tiny_bert), output_dir=out, force=True)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "report.json").exists()


@pytest.mark.parametrize("mine", ["checkpoint", "report.md", "benchmark"])
def test_force_never_removes_what_the_tool_did_not_write(tiny_bert, tmp_path, mine):
    out = tmp_path / "mine"
    users = out / mine if mine.endswith(".md") else out / mine / "weights.bin"
    users.parent.mkdir(parents=True)
    users.write_text("the user's")
    with pytest.raises(PofaError, match=f"holds no run of this tool, but names a run would write: {mine}"):
        run(tiny_recipe(tiny_bert), output_dir=out, force=True)
    assert users.read_text() == "the user's"


def test_force_removes_only_what_the_previous_run_wrote_and_a_link_not_its_target(tiny_bert, tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run(tiny_recipe(tiny_bert, training=None), output_dir=out)
    written = json.loads((out / "manifest.json").read_text())["written"]
    assert "checkpoint" not in written and {"manifest.json", "report.md"} <= set(written)
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("kept")
    (out / "checkpoint").symlink_to(elsewhere)  # added by the user after the run: not the run's
    (out / "notes.txt").write_text("kept")
    run(tiny_recipe(tiny_bert, training=None), output_dir=out, force=True)
    assert (elsewhere / "keep.txt").read_text() == "kept" and (out / "notes.txt").read_text() == "kept"
    assert (out / "checkpoint").is_symlink()


def test_cli_run_prints_results_and_refuses_a_second_run(tiny_bert, tmp_path, capsys):
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(tiny_recipe(tiny_bert)))
    out = tmp_path / "run"
    assert main(["run", str(recipe_path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and str(out) in printed
    assert main(["run", str(recipe_path), "-o", str(out)]) == 1
    assert "--resume" in capsys.readouterr().err


def _long_run_in_training(tiny_bert, tmp_path, **popen) -> tuple[subprocess.Popen, Path, Path]:
    """Start a CLI run that trains for a long time; return once its train stage is running."""
    recipe = tiny_recipe(tiny_bert)
    recipe["training"].update(max_steps=100000, logging_steps=1000)
    recipe_path, out = tmp_path / "recipe.yaml", tmp_path / "run"
    recipe_path.write_text(yaml.safe_dump(recipe))
    process = subprocess.Popen([sys.executable, "-m", "pofa_openvino.cli", "run", str(recipe_path), "-o", str(out)],
                               stdout=subprocess.DEVNULL, **popen)
    manifest_path = out / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        stages = json.loads(manifest_path.read_text())["stages"] if manifest_path.exists() else {}
        if stages.get("train", {}).get("status") == "running":
            time.sleep(1.0)  # well inside the training loop
            return process, recipe_path, out
        time.sleep(0.2)
    process.kill()
    pytest.fail("the run never reached the train stage")


def test_killed_run_resumes_without_redoing_finished_stages(tiny_bert, tmp_path):
    process, recipe_path, out = _long_run_in_training(tiny_bert, tmp_path, stderr=subprocess.DEVNULL,
                                                      start_new_session=True)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    manifest_path = out / "manifest.json"
    killed = json.loads(manifest_path.read_text())
    assert killed["stages"]["load"]["status"] == "done"
    assert killed["stages"]["train"]["status"] == "running"
    assert not (out / "checkpoint").exists()  # a half-written stage output never appears

    resumed = run(recipe_path, output_dir=out, resume=True, overrides=["training.max_steps=8"])
    assert resumed.reused == ["load"] and resumed.ran == ["train", "evaluate"]
    manifest = json.loads(manifest_path.read_text())
    assert manifest["stages"]["load"]["finished"] == killed["stages"]["load"]["finished"]
    assert manifest["stages"]["train"]["status"] == "done"


def test_interrupt_marks_the_stage_and_keeps_earlier_ones(tiny_bert, tmp_path):
    process, _, out = _long_run_in_training(tiny_bert, tmp_path, stderr=subprocess.PIPE, text=True)
    manifest_path = out / "manifest.json"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "rerun with --resume" in err and "Traceback" not in err
    manifest = json.loads(manifest_path.read_text())
    assert manifest["stages"]["train"]["status"] == "interrupted"
    assert manifest["stages"]["load"]["status"] == "done"


SLOW_STEP = 0.75  # seconds added to each of epoch 1's steps in the interrupted run


def test_training_resumes_from_its_last_epoch_checkpoint_exactly(tiny_bert, tmp_path, monkeypatch):
    """Interrupted in epoch 2 (pruning under way), resumed: the result equals an uninterrupted run's, and
    the reported training time includes the time before the interruption."""
    from conftest import linear_weights

    import pofa_openvino.train as train

    recipe = tiny_recipe(
        tiny_bert, training={"num_train_epochs": 3, "per_device_train_batch_size": 16, "learning_rate": 1e-3},
        pruning={"pattern": "1x1", "pruning_scope": "local", "target_sparsity": 0.5, "start_step": 2,
                 "end_step": 10, "pruning_frequency": 2})
    recipe["data"]["max_train_samples"] = 64  # 4 steps per epoch, 12 in all
    straight = run(recipe, output_dir=tmp_path / "straight")

    real_loss, calls = train.task_loss, []

    def interrupted_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # step 7: epoch 1's checkpoint is written, epoch 2 is half done
            raise KeyboardInterrupt
        if len(calls) <= 4:
            time.sleep(SLOW_STEP)  # epoch 1 is slow: its time must reach the resumed run's report
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train, "task_loss", interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        run(recipe, output_dir=tmp_path / "resumed")
    state = json.loads((tmp_path / "resumed" / "train-state" / "trainer_state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 4) and state["seconds"] >= 4 * SLOW_STEP
    monkeypatch.setattr(train, "task_loss", real_loss)
    resumed = run(recipe, output_dir=tmp_path / "resumed", resume=True)
    assert resumed.report["training"]["resumed_from_step"] == 4 and resumed.report["training"]["steps"] == 12
    assert resumed.report["training"]["seconds"] > state["seconds"]
    assert not (tmp_path / "resumed" / "train-state").exists()
    assert resumed.report["training"]["history"] == straight.report["training"]["history"]
    expected, got = linear_weights(straight.run_dir / "checkpoint"), linear_weights(resumed.run_dir / "checkpoint")
    assert all((expected[name] == got[name]).all() for name in expected)


@pytest.mark.needs_shared_data
@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_question_answering_prunes_and_distils_from_a_dense_teacher(model, shared_data, tmp_path, request):
    squad = str(shared_data / "squad" / "dev-subset.json")
    data = {"train_file": squad, "validation_file": squad, "max_seq_length": 96, "doc_stride": 32,
            "max_train_samples": 16, "max_eval_samples": 4}
    base = tiny_recipe(request.getfixturevalue(model), task="question-answering", data=data)
    teacher = run(base, output_dir=tmp_path / "teacher")
    assert teacher.report["model"]["labels"] is None
    student = run({**base, "name": "student", "distillation": {"teacher": str(teacher.run_dir / "checkpoint")},
                   "pruning": {"pattern": "4x1", "target_sparsity": 0.5, "pruning_scope": "local", "end_step": 6,
                               "pruning_frequency": 2},
                   "quantization": {"calibration_sampling_size": 8}}, output_dir=tmp_path / "student")
    accuracy = student.report["accuracy"]
    assert accuracy["metric"] == "f1" and accuracy["eval_samples"] == 4
    assert set(accuracy["torch_fp32"]) == set(accuracy["openvino_int8"]) == {"exact_match", "f1"}
    assert student.report["parity"]["ok"] and student.report["quantization"]["zeros_revived"] == 0

    from optimum.intel import OVModelForQuestionAnswering

    ir_dir = student.run_dir / "openvino"
    config = json.loads((ir_dir / "runtime_config.json").read_text())
    loaded = OVModelForQuestionAnswering.from_pretrained(ir_dir, ov_config=config["CPU"])
    assert loaded.config.model_type == student.report["model"]["architecture"]
    layers = {layer["name"]: layer for layer in student.report["sparsity"]["layers"]}
    assert layers["qa_outputs"]["zero_fraction"] == 0.0
    assert all(abs(layer["zero_fraction"] - 0.5) <= 0.005 for layer in layers.values() if layer["prunable"])


@pytest.mark.slow
def test_a_teacher_with_another_label_order_is_refused(tiny_bert, tmp_path):
    from pofa_openvino.modeling import load_model

    teacher = tmp_path / "teacher"
    load_model(str(tiny_bert), "text-classification", ["positive", "negative"]).save_pretrained(teacher)
    recipe = tiny_recipe(tiny_bert, distillation={"teacher": str(teacher)})
    with pytest.raises(PofaError, match=r"orders its labels \['positive', 'negative'\]"):
        run(recipe, output_dir=tmp_path / "run")


@pytest.mark.slow
def test_a_non_finite_loss_stops_training_at_its_step_and_keeps_the_earlier_stages(tiny_bert, tmp_path):
    recipe = tiny_recipe(tiny_bert, training={"max_steps": 6, "per_device_train_batch_size": 16,
                                              "learning_rate": 1e30})
    with pytest.raises(StageError, match=r"the training loss is (nan|inf|-inf) at step [2-6]: training stopped"):
        run(recipe, output_dir=tmp_path / "run")
    stages = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert stages["load"]["status"] == "done" and stages["train"]["status"] == "failed"


def test_a_second_run_into_a_locked_directory_names_the_holder(tiny_bert, tmp_path):
    from pofa_openvino.rundir import locked

    out = tmp_path / "run"
    with locked(out):
        with pytest.raises(PofaError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            run(tiny_recipe(tiny_bert, training=None), output_dir=out)
    assert run(tiny_recipe(tiny_bert, training=None), output_dir=out).ran  # released: it runs


def test_resume_reruns_a_stage_whose_outputs_were_deleted(tiny_bert, tmp_path):
    import shutil

    out = tmp_path / "run"
    run(tiny_recipe(tiny_bert), output_dir=out)
    shutil.rmtree(out / "checkpoint")
    again = run(tiny_recipe(tiny_bert), output_dir=out, resume=True)
    assert again.reused == ["load"] and again.ran[0] == "train" and (out / "checkpoint" / "config.json").is_file()
