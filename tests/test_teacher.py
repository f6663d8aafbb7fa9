"""Bring your own data: ``distillation.teacher: auto`` trains the dense teacher in the run, the student
starts from it, and every pruning run reports its gap to the dense reference measured in the same run."""

from __future__ import annotations

import logging

import pytest
from conftest import tiny_recipe

from pofa_openvino import run
from pofa_openvino.recipe import load_recipe
from pofa_openvino.stages import StageContext, _gap

PRUNING = {"pattern": "unstructured", "target_sparsity": 0.5, "pruning_scope": "local", "start_step": 0,
           "end_step": 4, "pruning_frequency": 2}


def _auto(model_dir, **sections):
    return tiny_recipe(model_dir, name="auto", pruning=PRUNING,
                       distillation={"teacher": "auto", "alpha": 0.0, "teacher_training": {
                           "max_steps": 6, "per_device_train_batch_size": 16, "learning_rate": 1e-3}},
                       **sections)


@pytest.fixture(scope="module")
def auto_run(tiny_bert, tmp_path_factory):
    """One run with a teacher trained here; the student's learning rate is tiny, so its weights stay
    (apart from what pruning removes) the ones it started from."""
    recipe = _auto(tiny_bert, quantization={"calibration_sampling_size": 8})
    recipe["training"] = {**recipe["training"], "learning_rate": 1e-12}
    return run(recipe, output_dir=tmp_path_factory.mktemp("auto") / "run")


@pytest.mark.slow
def test_the_teacher_is_trained_in_the_run_and_the_student_starts_from_it(auto_run):
    import torch
    from transformers import AutoModelForSequenceClassification

    report = auto_run.report
    assert auto_run.ran[:3] == ["load", "teacher", "train"]
    assert report["teacher"]["training"]["steps"] == 6 and (auto_run.run_dir / "teacher" / "config.json").is_file()
    assert not (auto_run.run_dir / "teacher-state").exists()
    teacher = AutoModelForSequenceClassification.from_pretrained(auto_run.run_dir / "teacher")
    student = AutoModelForSequenceClassification.from_pretrained(auto_run.run_dir / "checkpoint")
    assert torch.allclose(teacher.classifier.weight, student.classifier.weight, atol=1e-6)
    assert 0.45 <= report["sparsity"]["overall"] <= 0.55


@pytest.mark.slow
def test_the_gap_to_the_teacher_is_the_headline(auto_run):
    accuracy = auto_run.report["accuracy"]
    reference = accuracy["dense_reference"]
    assert reference["source"].startswith("the teacher trained in this run")
    assert reference["torch_fp32"] == auto_run.report["teacher"]["torch_fp32"]
    gap = accuracy["gap"]
    assert gap["measured"] == "openvino_int8" and gap["max_gap_points"] == 2.0
    expected = 100 * (reference["torch_fp32"]["accuracy"] - accuracy["openvino_int8"]["accuracy"])
    assert gap["points"]["accuracy"] == pytest.approx(expected, abs=1e-3)
    assert gap["exceeded"] == (expected > 2.0)
    lines = (auto_run.run_dir / "report.md").read_text().splitlines()
    headline = "\n".join(lines[:12])
    assert "dense reference" in headline and "gap to dense (OpenVINO INT8)" in headline


@pytest.mark.slow
def test_resume_reuses_the_teacher_when_only_pruning_changes(auto_run, tiny_bert):
    recipe = _auto(tiny_bert, quantization={"calibration_sampling_size": 8})
    recipe["training"] = {**recipe["training"], "learning_rate": 1e-12}
    recipe["pruning"] = {**PRUNING, "target_sparsity": 0.6}
    again = run(recipe, output_dir=auto_run.run_dir, resume=True)
    assert again.reused == ["load", "teacher"] and "train" in again.ran
    assert again.report["accuracy"]["dense_reference"] == auto_run.report["accuracy"]["dense_reference"]


@pytest.mark.slow
def test_a_fine_tuned_dense_model_is_its_own_reference_and_a_bare_encoder_has_none(auto_run, tiny_bert, tmp_path):
    dense = run(tiny_recipe(auto_run.run_dir / "teacher", name="dense", pruning=PRUNING), output_dir=tmp_path / "a")
    reference = dense.report["accuracy"]["dense_reference"]
    assert reference["source"] == "the loaded model, before pruning"
    assert reference["torch_fp32"] == auto_run.report["teacher"]["torch_fp32"]  # the same weights, evaluated
    assert dense.report["accuracy"]["gap"]["measured"] == "torch_fp32"
    bare = run(tiny_recipe(tiny_bert, name="bare", pruning=PRUNING), output_dir=tmp_path / "b")
    assert "dense_reference" not in bare.report["accuracy"] and "gap" not in bare.report["accuracy"]


@pytest.mark.parametrize(("reference", "measured", "max_gap", "points", "exceeded"), [
    (0.90, 0.85, 2.0, 5.0, True),
    (0.90, 0.89, 2.0, 1.0, False),
    (0.90, 0.92, 0.0, -2.0, False),  # better than the reference: no gap
    (0.90, 0.90, 0.0, 0.0, False),
])
def test_gap_points_and_the_threshold(tiny_bert, tmp_path, caplog, reference, measured, max_gap, points, exceeded):
    recipe = load_recipe(tiny_recipe(tiny_bert, pruning=PRUNING, report={"max_gap": max_gap}))
    ctx = StageContext(recipe=recipe, run_dir=tmp_path, outputs={})
    with caplog.at_level(logging.WARNING, logger="pofa_openvino"):
        gap = _gap(ctx, {"accuracy": reference}, {"accuracy": measured}, "openvino_int8")
    assert gap == {"measured": "openvino_int8", "points": {"accuracy": pytest.approx(points)},
                   "max_gap_points": max_gap, "exceeded": exceeded}
    warned = [r.getMessage() for r in caplog.records if "below its dense reference" in r.getMessage()]
    assert bool(warned) == exceeded
    if exceeded:
        assert "distillation.teacher: auto" in warned[0] and "mha_sparsity" in warned[0]
