"""Prune once on tiny generated encoders: INC reaches the target in the asked pattern while the student
distils from its dense copy, the checkpoint records what it is, and a transfer recipe locks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import linear_weights, tiny_recipe

from pofa_openvino import RecipeError, run
from pofa_openvino.data.synthetic import sentiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    """Unlabeled text in two kinds of file: a .txt (a line each) and a .tsv whose labels go unused."""
    train, evaluation = sentiment()
    folder = tmp_path_factory.mktemp("texts")
    (folder / "lines.txt").write_text("\n".join(e.texts[0] for e in train[:60]) + "\n")
    rows = "".join(f"{e.texts[0]}\t{e.label}\n" for e in evaluation[:40])
    (folder / "rows.tsv").write_text("sentence\tlabel\n" + rows)
    return folder


def pretrain_recipe(model_dir: Path, texts: Path, **pretrain) -> dict:
    """100 texts, 10 held out: 12 steps per epoch of 8; 4 epochs, pruned over the first two."""
    section = {"text_files": [str(texts / "lines.txt"), str(texts / "rows.tsv")], "text_column": "sentence",
               "max_seq_length": 32, "eval_samples": 10,
               "pruning": {"target_sparsity": 0.8, "pattern": "4x1", "end_step": 24, "pruning_frequency": 4},
               "training": {"num_train_epochs": 4, "per_device_train_batch_size": 8, "learning_rate": 2e-3,
                            "warmup_ratio": 0.0, "logging_steps": 12}}
    section.update(pretrain)
    return {"name": "prune-once", "model": {"name_or_path": str(model_dir)}, "pretrain": section}


def _encoder(model_dir: Path) -> dict:
    from transformers import AutoModel

    from pofa_openvino.prune import linear_weights as weights

    model = AutoModel.from_pretrained(model_dir)
    return {name: w.detach() for name, w in weights(model).items() if "pooler" not in name}


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_prune_once_reaches_the_target_in_whole_blocks_while_the_student_recovers(model, texts, tmp_path, request):
    result = run(pretrain_recipe(request.getfixturevalue(model), texts), output_dir=tmp_path / "run")
    assert result.ran == ["pretrain"]
    report = result.report["pretrain"]
    assert report["objective"] == "hidden_states" and "MSE on the last layer" in report["loss"]
    assert (report["texts"], report["held_out"]) == (90, 10) and report["training"]["steps"] == 48
    for name, weight in _encoder(result.run_dir / "pretrained").items():
        zeros = (weight == 0).reshape(weight.shape[0] // 4, 4, weight.shape[1])
        assert abs(float(zeros.float().mean()) - 0.8) < 0.01, f"{name}: {float(zeros.float().mean()):.3f} zeros"
        assert (zeros.all(dim=1) | ~zeros.any(dim=1)).all(), f"{name}: a 4x1 block is partly zero"
    # The dense copy matches its teacher exactly; pruning (done by step 24, end of epoch 2) pushes the
    # student away; training on at the target brings it back toward the teacher.
    held_out = [epoch["held_out_loss"] for epoch in report["training"]["history"]]
    assert report["held_out_loss_before"] == 0.0 and held_out[1] > 0.0
    assert held_out[3] < held_out[1], held_out
    config = json.loads((result.run_dir / "pretrained" / "config.json").read_text())
    assert config["prune_once"]["pattern"] == "4x1" and config["prune_once"]["target_sparsity"] == 0.8
    assert config["prune_once"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert config["prune_once"]["source"] == Path(request.getfixturevalue(model)).name  # no local path


def test_masked_lm_checkpoints_distil_logits_and_keep_the_lm_head_dense(tiny_bert, texts, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, BertForMaskedLM

    mlm_dir = tmp_path / "tiny-mlm"
    BertForMaskedLM(AutoModelForMaskedLM.from_pretrained(tiny_bert).config).save_pretrained(mlm_dir)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(mlm_dir)
    result = run(pretrain_recipe(mlm_dir, texts, pruning={"pattern": "unstructured", "target_sparsity": 0.9}),
                 output_dir=tmp_path / "run")
    report = result.report["pretrain"]
    assert report["objective"] == "mlm" and "0.5 * MLM CE + 0.5 * T^2 * KL, T = 2.0" in report["loss"]
    assert report["schedule"]["start_step"] == 0 and report["schedule"]["end_step"] == 24  # half of 48 steps
    saved = AutoModelForMaskedLM.from_pretrained(result.run_dir / "pretrained")
    weights = {name: module.weight for name, module in saved.named_modules() if hasattr(module, "weight")
               and module.weight is not None and module.weight.dim() == 2}
    assert float((weights["cls.predictions.transform.dense"] == 0).float().mean()) < 0.01
    assert float((weights["bert.embeddings.word_embeddings"] == 0).float().mean()) < 0.01  # the tied decoder
    encoder = [w for name, w in weights.items() if ".encoder.layer." in name]
    assert all(float((w == 0).float().mean()) == pytest.approx(0.9, abs=0.01) for w in encoder)


def test_a_transfer_recipe_locks_the_pruned_once_zeros(tiny_bert, texts, tmp_path, caplog):
    """One recipe: prune once, then fine-tune on a task with the pattern locked; resume reuses prune once."""
    recipe = {**tiny_recipe(tiny_bert, pruning={"pruning_type": "pattern_lock"}),
              "pretrain": pretrain_recipe(tiny_bert, texts)["pretrain"]}
    result = run(recipe, output_dir=tmp_path / "run")
    assert result.ran == ["pretrain", "load", "train", "evaluate"]
    assert result.report["model"]["path"] == str(tmp_path / "run" / "pretrained")
    pretrained = _encoder(tmp_path / "run" / "pretrained")
    tuned = {name.removeprefix("bert."): w for name, w in linear_weights(tmp_path / "run" / "checkpoint").items()}
    for name, weight in pretrained.items():
        assert ((weight == 0) <= (tuned[name] == 0)).all(), f"{name}: a pruned-once zero was revived"
    assert result.report["sparsity"]["overall"] >= 0.79
    again = run(recipe, output_dir=tmp_path / "run", resume=True)
    assert again.ran == [] and again.reused == ["pretrain", "load", "train", "evaluate"]

    caplog.set_level("WARNING")
    run(tiny_recipe(tmp_path / "run" / "pretrained"), output_dir=tmp_path / "unlocked")
    assert "without `pruning: {pruning_type: pattern_lock}` fine-tuning will fill its zeros" in caplog.text


def test_prune_once_resumes_mid_epoch_exactly(tiny_bert, texts, tmp_path, monkeypatch):
    """Checkpoints every 5 steps (save_steps) besides each epoch's end: stopped at step 20, resumed from
    step 15 (3 steps into epoch 2, pruning under way), the result is the uninterrupted run's."""
    import pofa_openvino.pretrain as pretrain

    recipe = pretrain_recipe(tiny_bert, texts)
    recipe["pretrain"]["training"]["save_steps"] = 5
    straight = run(recipe, output_dir=tmp_path / "straight")
    real_loss, calls = pretrain.HiddenStateDistillation.loss, []

    def interrupted(self, model, batch):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    monkeypatch.setattr(pretrain.HiddenStateDistillation, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(recipe, output_dir=tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed" / "manifest.json").read_text())["stages"]["pretrain"]["status"] == \
        "interrupted"
    monkeypatch.setattr(pretrain.HiddenStateDistillation, "loss", real_loss)
    resumed = run(recipe, output_dir=tmp_path / "resumed", resume=True)
    assert resumed.report["pretrain"]["training"]["resumed_from_step"] == 15
    assert not (tmp_path / "resumed" / "pretrain-state").exists()
    expected, got = _encoder(tmp_path / "straight" / "pretrained"), _encoder(tmp_path / "resumed" / "pretrained")
    assert all(((expected[name] == 0) == (got[name] == 0)).all() for name in expected)
    assert resumed.report["pretrain"]["training"]["history"] == straight.report["pretrain"]["training"]["history"]


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"pruning": {"pruning_type": "pattern_lock"}}, "pretrain.pruning", "prune once creates them"),
    ({"text_files": []}, "pretrain", "give `text_files`"),
    ({"objective": "masked"}, "pretrain.objective", "use auto, mlm or hidden_states"),
    ({"text_files": ["missing.txt"]}, "pretrain.text_files[0]", "file not found"),
])
def test_bad_pretrain_sections_name_the_key(tiny_bert, texts, change, key, message):
    from pofa_openvino.recipe import load_recipe

    with pytest.raises(RecipeError) as error:
        load_recipe(pretrain_recipe(tiny_bert, texts, **change))
    assert error.value.key == key and message in str(error.value)


def test_run_time_problems_are_named_before_training(tiny_bert, texts, tmp_path):
    with pytest.raises(RecipeError, match="no masked-LM head.*use objective: hidden_states") as error:
        run(pretrain_recipe(tiny_bert, texts, objective="mlm"), output_dir=tmp_path / "a")
    assert error.value.key == "pretrain.objective"
    with pytest.raises(RecipeError, match="end_step 48 is not before the run's last step") as error:
        run(pretrain_recipe(tiny_bert, texts, pruning={"end_step": 48}), output_dir=tmp_path / "b")
    assert error.value.key == "pretrain.pruning.end_step"
    from pofa_openvino.errors import PofaError

    with pytest.raises(PofaError, match="no column 'text'; the file has sentence, label"):
        run(pretrain_recipe(tiny_bert, texts, text_column="text"), output_dir=tmp_path / "c")
    with pytest.raises(RecipeError, match="`data` is missing"):
        run({**pretrain_recipe(tiny_bert, texts), "training": {"max_steps": 2}}, output_dir=tmp_path / "d")
    (tmp_path / "one.txt").write_text("a single line\n")
    with pytest.raises(PofaError, match="held out for the held-out loss and none is left to train on"):
        run(pretrain_recipe(tiny_bert, texts, text_files=[str(tmp_path / "one.txt")]), output_dir=tmp_path / "e")

    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    mlm_dir = tmp_path / "tiny-mlm"
    BertForMaskedLM(BertConfig.from_pretrained(tiny_bert)).save_pretrained(mlm_dir)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(mlm_dir)
    with pytest.raises(RecipeError, match="has no masked-LM head: its logits would come from a random layer") as error:
        run(pretrain_recipe(mlm_dir, texts, teacher=str(tiny_bert)), output_dir=tmp_path / "f")
    assert error.value.key == "pretrain.teacher"


@pytest.mark.needs_shared_data
def test_squad_json_gives_its_contexts_once(shared_data):
    from pofa_openvino.data.text import read_texts

    contexts = read_texts(shared_data / "squad" / "dev-subset.json", "text")
    assert len(contexts) == len(set(contexts)) == 173


def test_a_hub_dataset_gives_its_text_column(tmp_path):
    """The hub path through ``datasets``, on a local directory laid out like a hub dataset repository."""
    from pofa_openvino.data.text import load_texts
    from pofa_openvino.errors import DataError
    from pofa_openvino.recipe import PretrainSection

    repo = tmp_path / "wiki"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "train.jsonl").write_text("".join(json.dumps({"id": i, "text": f"article {i} text"}) + "\n"
                                                       for i in range(30)))
    texts = load_texts(PretrainSection(dataset=str(repo), max_samples=12))
    assert texts == [f"article {i} text" for i in range(12)]
    with pytest.raises(DataError, match="no column 'body'; it has id, text"):
        load_texts(PretrainSection(dataset=str(repo), text_column="body"))
