"""``init --train --validation``: a recipe sized to a user's own csv, tsv or jsonl files that validates
and runs; bad files and option mixes are one line with exit code 2, and nothing is written."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from pofa_openvino.cli import main
from pofa_openvino.recipe import load_recipe

WORDS = "the film was good bad long short great awful plot actors music story slow fast".split()


def _rows(n: int, seed: int, labels=("billing", "refund", "login")) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"id": str(i), "utterance": " ".join(rng.choices(WORDS, k=rng.randint(2, 20))),
             "intent": labels[i % len(labels)]} for i in range(n)]


def _write(path, rows) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def files(tmp_path, request):
    suffix = getattr(request, "param", ".csv")
    train, validation = tmp_path / f"train{suffix}", tmp_path / f"dev{suffix}"
    _write(train, _rows(90, 0))
    _write(validation, _rows(30, 1))
    return train, validation


@pytest.mark.parametrize("files", [".csv", ".tsv", ".jsonl"], indirect=True)
@pytest.mark.parametrize("target", ["xeon-amx", "edge"])
def test_init_sizes_a_recipe_to_the_files(files, target, tiny_bert, tmp_path, capsys):
    import numpy as np
    from transformers import AutoTokenizer

    train, validation = files
    out = tmp_path / "recipes" / "intents.yaml"
    assert main(["init", "--train", str(train), "--validation", str(validation), "--model", str(tiny_bert),
                 "--label-column", "intent", "--target", target, "-o", str(out)]) == 0
    assert "90 training rows, 3 labels" in capsys.readouterr().out
    spec = load_recipe(out)
    assert spec.data.text_columns == ["utterance"]  # `id` holds numbers, not text
    assert spec.data.labels == ["billing", "login", "refund"] and spec.data.label_column == "intent"
    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(tiny_bert)([r["utterance"] for r in _rows(90, 0)])
               ["input_ids"]]
    p99 = math.ceil(np.percentile(lengths, 99))
    assert spec.data.max_seq_length == 16 * math.ceil(p99 / 16)  # the 99th percentile, rounded up
    assert spec.distillation.trains_teacher and spec.distillation.alpha == 0.0
    assert spec.pruning.structured == (target == "edge") and spec.package.target == target
    steps = 3 * 3  # 90 rows at batch 32, 3 epochs
    assert 0 <= spec.pruning.start_step < spec.pruning.end_step < steps
    assert "train" in out.read_text() and "../train" in out.read_text()  # relative to the recipe


@pytest.mark.slow
def test_the_written_recipe_runs(files, tiny_bert, tmp_path):
    from pofa_openvino import run

    train, validation = files
    out = tmp_path / "intents.yaml"
    assert main(["init", "--train", str(train), "--validation", str(validation), "--model", str(tiny_bert),
                 "--label-column", "intent", "-o", str(out)]) == 0
    result = run(out, output_dir=tmp_path / "run", overrides=[
        "training.max_steps=6", "distillation.teacher_training.max_steps=4", "pruning.start_step=0",
        "pruning.end_step=4", "pruning.pruning_frequency=2", "quantization.calibration_sampling_size=8",
        "package=null"])
    assert result.ran[:3] == ["load", "teacher", "train"]
    assert result.report["accuracy"]["dense_reference"]["source"].startswith("the teacher trained in this run")
    assert 0.85 <= result.report["sparsity"]["overall"] <= 0.95


def _one_label(tmp_path):
    train, validation = tmp_path / "t.csv", tmp_path / "v.csv"
    _write(train, _rows(10, 0, labels=("only",)))
    _write(validation, _rows(5, 1, labels=("only",)))
    return (["--train", str(train), "--validation", str(validation), "--label-column", "intent"],
            "every training row has the label 'only'")


def _no_label_column(tmp_path):
    train = tmp_path / "t.csv"
    _write(train, _rows(10, 0))
    return ["--train", str(train), "--validation", str(train)], "no column 'label' (the label)"


def _three_text_columns(tmp_path):
    train = tmp_path / "t.jsonl"
    _write(train, [{**row, "a": "x y", "b": "z w"} for row in _rows(10, 0)])
    return ["--train", str(train), "--validation", str(train), "--label-column", "intent"], "3 text columns"


def _bad_row(tmp_path):
    train, validation = tmp_path / "t.csv", tmp_path / "v.csv"
    _write(train, _rows(10, 0))
    _write(validation, [*_rows(4, 1), {"id": "9", "utterance": "", "intent": "refund"}])
    return (["--train", str(train), "--validation", str(validation), "--label-column", "intent"],
            "row 6: column 'utterance' is empty")


def _unseen_label(tmp_path):
    train, validation = tmp_path / "t.csv", tmp_path / "v.csv"
    _write(train, _rows(10, 0))
    _write(validation, _rows(6, 1, labels=("billing", "cancel")))
    return (["--train", str(train), "--validation", str(validation), "--label-column", "intent"],
            "label 'cancel' is not one of")


@pytest.mark.parametrize(("make", "args", "expected"), [
    (_one_label, [], None), (_no_label_column, [], None), (_three_text_columns, [], None), (_bad_row, [], None),
    (_unseen_label, [], None),
    (None, ["--train", "t.csv"], "give both --train and --validation"),
    (None, ["--train", "t.csv", "--validation", "v.csv", "--task", "sst2"], "--task names a GLUE/SQuAD task"),
    (None, [], "give --model and --task, or --train and --validation"),
])
def test_bad_files_and_option_mixes_are_one_line_and_write_nothing(make, args, expected, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra, found = make(tmp_path) if make else ([], expected)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["init", *extra, *args, "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert found in err.strip().splitlines()[-1] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_command_lines_targets_are_the_recipes():
    from typing import get_args

    from pofa_openvino.cli import TARGETS
    from pofa_openvino.recipe import PackageSection

    assert TARGETS == get_args(PackageSection.model_fields["target"].annotation)
