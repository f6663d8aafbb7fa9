"""INC pruning during fine-tuning, checked on the saved tensors: lock keeps the mask bit for bit,
gradual reaches the target per layer in the asked pattern, and the task head stays dense."""

from __future__ import annotations

import pytest
from conftest import linear_weights, sparsify, tiny_recipe

from pofa_openvino import run

pytestmark = pytest.mark.slow

HEADS = ("classifier", "pre_classifier", "pooler")


def _encoder(weights: dict) -> dict:
    return {name: w for name, w in weights.items() if not any(head in name for head in HEADS)}


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_lock_keeps_the_checkpoints_zero_mask_bit_for_bit(model, tmp_path, request):
    sparse = sparsify(request.getfixturevalue(model), tmp_path / "sparse", fraction=0.9)
    before = _encoder(linear_weights(sparse))
    result = run(tiny_recipe(sparse, pruning={"pruning_type": "pattern_lock"}), output_dir=tmp_path / "run")
    after = linear_weights(result.run_dir / "checkpoint")
    for name, weight in before.items():
        assert ((after[name] == 0) == (weight == 0)).all(), f"{name}: the zero mask changed"
        kept = weight != 0
        assert (after[name][kept] != weight[kept]).float().mean() > 0.5, f"{name}: non-zero weights did not train"
    assert result.report["sparsity"]["overall"] == pytest.approx(result.report["sparsity"]["loaded_overall"])
    assert 0.88 < result.report["sparsity"]["overall"] < 0.92
    assert (after["classifier"] != 0).all()


def _gradual(model_dir, tmp_path, pattern: str, target: float) -> dict:
    pruning = {"pruning_type": "snip_momentum", "pattern": pattern, "target_sparsity": target,
               "pruning_scope": "local", "start_step": 2, "end_step": 10, "pruning_frequency": 2}
    result = run(tiny_recipe(model_dir, pruning=pruning, training={
        "max_steps": 14, "per_device_train_batch_size": 16, "learning_rate": 1e-3}), output_dir=tmp_path / "run")
    layers = {layer["name"]: layer for layer in result.report["sparsity"]["layers"]}
    for name, layer in layers.items():
        if layer["prunable"]:
            assert abs(layer["zero_fraction"] - target) <= 0.005, f"{name}: {layer['zero_fraction']}"
        else:
            assert layer["zero_fraction"] == 0.0, f"{name} is the head: it must stay dense"
    return _encoder(linear_weights(result.run_dir / "checkpoint"))


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_gradual_4x1_prunes_every_layer_to_target_in_whole_blocks(model, tmp_path, request):
    for name, weight in _gradual(request.getfixturevalue(model), tmp_path, "4x1", 0.8).items():
        # INC's NxM: N consecutive output rows by M input columns; every block is all-zero or all-kept.
        blocks = (weight == 0).reshape(weight.shape[0] // 4, 4, weight.shape[1])
        assert (blocks.all(dim=1) | ~blocks.any(dim=1)).all(), f"{name}: a 4x1 block is partly zero"


def test_gradual_2_of_4_keeps_two_weights_in_every_group_of_four(tiny_bert, tmp_path):
    for name, weight in _gradual(tiny_bert, tmp_path, "2:4", 0.5).items():
        groups = (weight != 0).reshape(weight.shape[0], weight.shape[1] // 4, 4)
        assert (groups.sum(dim=-1) <= 2).all(), f"{name}: a group of 4 keeps more than 2 weights"


def test_a_weight_pruning_config_object_drives_the_run(tiny_bert, tmp_path):
    from neural_compressor.config import WeightPruningConfig

    config = WeightPruningConfig(pruning_configs=[{"op_names": ["layer.0."], "target_sparsity": 0.5,
                                                   "pattern": "1x1", "pruning_scope": "local"}],
                                 pruning_type="magnitude", start_step=0, end_step=4)
    result = run(tiny_recipe(tiny_bert), output_dir=tmp_path / "run", pruning=config)
    assert result.manifest["stages"]["train"]["status"] == "done"
    recorded = (result.run_dir / "recipe.yaml").read_text()
    assert "magnitude" in recorded and "layer.0." in recorded
    layers = {layer["name"]: layer["zero_fraction"] for layer in result.report["sparsity"]["layers"]}
    assert layers["bert.encoder.layer.0.attention.self.query"] == pytest.approx(0.5, abs=0.005)
    assert layers["bert.encoder.layer.1.attention.self.query"] == 0.0
    assert layers["classifier"] == 0.0
