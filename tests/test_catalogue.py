"""The PruneOFA catalogue: the registry's published table, one valid recipe per model and task (in
sync with the generator), the listing and init commands, and smoke runs of one recipe per task type."""

from __future__ import annotations

from pathlib import Path

import pytest

from pofa_openvino import load_recipe, run
from pofa_openvino.catalogue import entries, init_recipe, recipe_text
from pofa_openvino.cli import main
from pofa_openvino.recipe import PretrainPruning, PretrainSection, TrainingSection
from pofa_openvino.registry import MODELS
from pofa_openvino.report import summary_rows
from pofa_openvino.yaml_lines import parse

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


# Recipes that read ../shared/data (the offline prune-once corpus): absent in a user's clone.
ON_SHARED_DATA = {"prune-once-minilm.yaml"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=[pytest.mark.needs_shared_data] if p.name in ON_SHARED_DATA
                                               else []) for p in sorted(RECIPES.glob("*.yaml"))], ids=lambda p: p.name)
def test_every_recipe_validates(path, request):
    if path.name in ON_SHARED_DATA:
        request.getfixturevalue("shared_data")
    load_recipe(path)


def test_the_catalogue_covers_the_published_table_and_matches_the_generator():
    cells = [(e.model.hub_id, e.task.key) for e in entries() if not (e.qat or e.structured)]
    assert len(cells) == sum(len(m.published) for m in MODELS.values()) == 26
    for entry in entries():
        path = RECIPES / f"{entry.name}.yaml"
        assert path.read_text() == recipe_text(entry), f"{path.name} differs from the generator: run make catalogue"
        spec = load_recipe(path)
        assert spec.model.name_or_path == entry.model.hub_id and spec.task == entry.task.task
        assert spec.package is not None and spec.package.target == "xeon-amx"
        if entry.structured:  # heads and neurons removed while the PruneOFA zeros stay locked
            assert spec.pruning.structured and spec.pruning.pruning_configs[0].pruning_type == "pattern_lock"
        elif entry.model.fine_tuned_on != entry.task.key:
            assert spec.pruning.pruning_type == "pattern_lock"
        assert "# Schedule: " in path.read_text()  # every recipe says its schedule shape and why
        if entry.model.fine_tuned_on != entry.task.key:
            assert spec.distillation.temperature == 2.0
            assert spec.distillation.alpha == 0.0 and "pooler" in spec.pruning.excluded_op_names
    assert MODELS["Intel/bert-large-uncased-sparse-90-unstructured-pruneofa"].published["squad"] == \
        {"exact_match": 0.8335, "f1": 0.902}


def test_listing_and_init_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich folds long cells on a narrow console
    assert main(["models"]) == 0
    assert "79.83/87.25" in capsys.readouterr().out
    assert main(["recipes", str(RECIPES)]) == 0
    assert "bert-base-90-sst2.yaml" in capsys.readouterr().out
    (tmp_path / "broken.yaml").write_text("name: broken\nmodel: {name_or_path: ./nowhere}\n")
    (tmp_path / "fine.yaml").write_text((RECIPES / "bert-base-90-sst2.yaml").read_text())
    assert main(["recipes", str(tmp_path)]) == 0  # one bad recipe is listed as such, the others still
    listing = capsys.readouterr().out
    assert "fine.yaml" in listing and "broken.yaml" in listing and "invalid" in listing
    out = tmp_path / "mine.yaml"
    assert main(["init", "--model", "my-org/bert-base-cased-sparse", "--task", "qnli", "-o", str(out)]) == 0
    spec = load_recipe(out)
    assert spec.data.dataset == "glue/qnli" and spec.distillation.teacher == "textattack/bert-base-uncased-QNLI"
    assert main(["init", "--model", "my-org/bert-base-cased-sparse", "--task", "qnli", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    name, text = init_recipe("Intel/distilbert-base-uncased-sparse-90-unstructured-pruneofa", "squad")
    assert name == "distilbert-90-squad" and "distilbert-base-uncased-distilled-squad" in text


def test_a_run_on_a_registered_model_shows_the_published_metric():
    report = {"model": {"name_or_path": "x", "architecture": "bert", "parameters": 1,
                                        "published": MODELS["Intel/bert-base-uncased-sparse-90-unstructured-pruneofa"]
                        .published["sst2"]},
              "accuracy": {"metric": "accuracy", "split": "validation", "eval_samples": 872,
                           "torch_fp32": {"accuracy": 0.9}, "openvino_int8": {"accuracy": 0.899}}}
    rows = dict(summary_rows(report))
    assert rows["published (model card) / measured"] == "accuracy 0.9088 / torch FP32 0.9000, INT8 0.8990"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["distilbert-90-sst2", "bert-base-90-mnli", "bert-base-90-squad"])
def test_smoke_runs_a_recipe_of_each_task_type_end_to_end(recipe, tmp_path):
    """Single sentence, sentence pair (three labels), question answering: every stage, offline."""
    result = run(RECIPES / f"{recipe}.yaml", output_dir=tmp_path / recipe, smoke=True)
    assert result.ran == ["load", "train", "evaluate", "export", "quantize", "benchmark", "package"]
    original = load_recipe(RECIPES / f"{recipe}.yaml")
    assert result.report["model"]["architecture"] == MODELS[original.model.name_or_path].architecture
    assert result.report["quantization"]["zeros_revived"] == 0
    assert result.report["package"]["selftest"]["samples"] == 4
    if recipe.endswith("mnli"):
        assert result.report["model"]["labels"] == ["entailment", "neutral", "contradiction"]


def test_smoke_shortens_the_qat_budget_too(tmp_path):
    """A QAT recipe's own budget (Intel's 3 epochs) is cut to a few steps, as `training` is."""
    from pofa_openvino.smoke import smoke_recipe

    spec = load_recipe(RECIPES / "distilbert-90-mnli-qat.yaml")
    assert spec.qat_training().num_train_epochs == 3
    assert smoke_recipe(spec, tmp_path).qat_training().max_steps == 4


def test_the_readme_links_every_recipe_of_the_catalogue():
    readme = (RECIPES.parent / "README.md").read_text()
    missing = [entry.name for entry in entries() if f"recipes/{entry.name}.yaml" not in readme]
    assert not missing, missing


def test_the_readme_shows_the_prune_once_recipe_as_it_is():
    """The README's prune-once block lists every key: the recipe's value where it sets one, else the default."""
    readme = (RECIPES.parent / "README.md").read_text()
    block = readme.split("\n## Prune once", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    shown, _ = parse(block, "README.md")
    recipe, _ = parse((RECIPES / "prune-once-minilm.yaml").read_text(), "prune-once-minilm.yaml")
    assert shown["model"] == recipe["model"]
    sections = {"pretrain": PretrainSection, "pruning": PretrainPruning, "training": TrainingSection}

    def same(shown: dict, given: dict, where: str) -> None:
        assert not set(given) - set(shown), f"{where}: the README leaves out {sorted(set(given) - set(shown))}"
        for key, value in shown.items():
            if key in sections:
                same(value, given.get(key, {}), f"{where}.{key}")
                continue
            field = sections[where.rsplit(".", 1)[-1]].model_fields[key]
            expected = given[key] if key in given else field.get_default(call_default_factory=True)
            assert value == expected, f"{where}.{key}: README {value!r}, recipe or default {expected!r}"

    same(shown["pretrain"], recipe["pretrain"], "pretrain")


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["auto", "mlm"])
@pytest.mark.needs_shared_data
def test_smoke_runs_the_prune_once_recipe(objective, shared_data, tmp_path):
    """The prune-once recipe's wiring, offline, for both losses (a tiny masked-LM model for ``mlm``)."""
    result = run(RECIPES / "prune-once-minilm.yaml", output_dir=tmp_path / "run", smoke=True,
                 overrides=[f"pretrain.objective={objective}"])
    assert result.ran == ["pretrain"]
    assert result.report["pretrain"]["objective"] == ("mlm" if objective == "mlm" else "hidden_states")
    assert result.report["pretrain"]["checkpoint"]["sparsity"] == pytest.approx(0.9, abs=0.001)
