"""Structured sparsity: INC removes whole FFN neurons (channelx1) and attention heads (mha) while
fine-tuning, the model is slimmed without changing its logits, reloads from its checkpoint, exports to a
smaller IR and keeps its remaining zeros through INT8."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_recipe

from pofa_openvino import run
from pofa_openvino.errors import RecipeError
from pofa_openvino.recipe import load_recipe

STRUCTURED = {"ffn2_sparsity": 0.5, "mha_sparsity": 0.5, "pruning_scope": "local", "start_step": 1, "end_step": 6,
              "pruning_frequency": 1, "slim_multiple": 16}


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_distilbert"])
def structured_run(request, tmp_path_factory):
    """One structured run per architecture, through INT8 and export, shared by the checks below."""
    model = request.getfixturevalue(request.param)
    out = tmp_path_factory.mktemp(f"structured-{request.param}") / "run"
    result = run(tiny_recipe(model, pruning=STRUCTURED, quantization={"approach": "static",
                                                                      "calibration_sampling_size": 16},
                             training={"max_steps": 10, "per_device_train_batch_size": 16, "learning_rate": 1e-3}),
                 output_dir=out)
    return model, result


@pytest.mark.slow
def test_inc_removes_half_the_heads_and_neurons_of_every_layer(structured_run):
    _, result = structured_run
    structure = result.report["structure"]
    for layer in structure["layers"]:
        assert layer["heads"] == 1, layer  # 2 heads, mha_sparsity 0.5, local scope
        assert layer["neurons_alive"] == 64 and layer["intermediate_size"] == 64, layer  # 128 neurons, half kept
    assert structure["flops_after"] < structure["flops_before"]
    assert structure["parameters_after"] < structure["parameters_before"]


@pytest.mark.slow
def test_slimming_keeps_the_logits_and_the_checkpoint_reloads_them(structured_run):
    import torch

    from pofa_openvino.modeling import load_model

    _, result = structured_run
    assert result.report["structure"]["max_abs_logit_diff"] <= 1e-4
    config = json.loads((result.run_dir / "checkpoint" / "config.json").read_text())
    assert [layer["intermediate_size"] for layer in config["pofa_structure"]["layers"]] == [64, 64]
    model = load_model(str(result.run_dir / "checkpoint"), "text-classification")
    widths = sorted({m.in_features for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and n.endswith(("output.dense", "ffn.lin2"))
                     and "attention" not in n})
    assert widths == [64]
    # The reloaded model is the evaluated one: its metric is the run's.
    assert result.report["accuracy"]["torch_fp32"] == result.report["accuracy"]["openvino_fp32"]


@pytest.mark.slow
def test_the_ir_holds_smaller_matmuls_and_int8_keeps_the_zeros(structured_run):
    import openvino as ov

    _, result = structured_run
    core = ov.Core()
    shapes = {tuple(op.get_output_partial_shape(0).to_shape())
              for op in core.read_model(result.run_dir / "openvino-fp32" / "openvino_model.xml").get_ops()
              if op.get_type_name() == "Constant" and len(op.get_output_partial_shape(0)) == 2}
    assert (64, 128) not in shapes and (128, 64) not in shapes  # the full FFN weights are gone
    assert (64, 64) in shapes
    assert result.report["quantization"]["zeros_revived"] == 0


def test_slim_rounds_the_kept_neurons_up_to_the_multiple(tiny_bert):
    import torch
    from transformers import AutoModelForSequenceClassification

    from pofa_openvino.structure import slim

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.output.dense.weight[:, 20:] = 0.0  # 20 of 128 neurons kept
            layer.attention.output.dense.weight[:, 32:] = 0.0  # head 1 of 2 removed
    inputs = {"input_ids": torch.randint(5, 30, (3, 12))}
    before = model(**inputs).logits
    record = slim(model, 16)
    assert [layer["intermediate_size"] for layer in record["layers"]] == [32, 32]
    assert [layer["kept_heads"] for layer in record["layers"]] == [[0], [0]]
    assert torch.allclose(model(**inputs).logits, before, atol=1e-5)


def test_structured_pruning_on_an_architecture_it_cannot_slim_is_a_recipe_error(tmp_path, tiny_bert):
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    config = RobertaConfig(vocab_size=tokenizer.vocab_size + 2, hidden_size=64, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=128, max_position_embeddings=64)
    RobertaModel(config).save_pretrained(tmp_path / "roberta")
    tokenizer.save_pretrained(tmp_path / "roberta")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: r\nmodel:\n  name_or_path: {tmp_path / 'roberta'}\ndata:\n  dataset: builtin:sentiment\n"
                      "training:\n  max_steps: 2\npruning:\n  mha_sparsity: 0.5\n")
    with pytest.raises(RecipeError) as error:
        run(recipe, output_dir=tmp_path / "run")
    assert error.value.key == "pruning.mha_sparsity" and error.value.line == 9
    assert "bert, distilbert" in str(error.value) and "roberta" in str(error.value)


@pytest.mark.parametrize(("pruning", "key", "message"), [
    ({"ffn2_sparsity": 1.0}, "pruning.ffn2_sparsity", "less than 1"),
    ({"mha_sparsity": 0}, "pruning.mha_sparsity", "greater than 0"),
    ({"pruning_configs": [{"pattern": "heads"}]}, "pruning.pruning_configs[0].pattern", "mha (attention heads)"),
    ({"slim_multiple": 0}, "pruning.slim_multiple", "greater than or equal to 1"),
])
def test_structured_keys_are_validated(pruning, key, message, tiny_bert):
    with pytest.raises(RecipeError) as error:
        load_recipe(tiny_recipe(tiny_bert, pruning=pruning))
    assert error.value.key == key and message in str(error.value)


def test_prune_once_refuses_structured_pruning(tiny_bert):
    recipe = {"name": "p", "model": {"name_or_path": str(tiny_bert)},
              "pretrain": {"text_files": ["x.txt"], "pruning": {"mha_sparsity": 0.5}}}
    with pytest.raises(RecipeError, match="remove heads and neurons in the task recipe"):
        load_recipe(recipe)


@pytest.mark.slow
def test_structured_pruning_keeps_a_pruneofa_checkpoints_zeros_with_pattern_lock(tiny_bert, tmp_path):
    import torch
    from conftest import linear_weights, sparsify

    sparse = sparsify(tiny_bert, tmp_path / "sparse", fraction=0.9)
    before = linear_weights(sparse)
    pruning = {**STRUCTURED, "pruning_configs": [{"pruning_type": "pattern_lock", "start_step": 0, "end_step": 0}]}
    result = run(tiny_recipe(sparse, pruning=pruning, training={"max_steps": 10, "per_device_train_batch_size": 16,
                                                                "learning_rate": 1e-3}), output_dir=tmp_path / "run")
    assert [layer["heads"] for layer in result.report["structure"]["layers"]] == [1, 1]
    after = linear_weights(result.run_dir / "checkpoint")
    for name, slimmed in after.items():
        if "encoder" not in name:
            continue
        # Every zero the slimmed layer still holds was a zero before: the survivors kept their mask.
        full = before[name]
        assert (slimmed == 0).float().mean() > 0.8, name
        assert slimmed.numel() < full.numel() or torch.equal(slimmed == 0, full == 0), name
