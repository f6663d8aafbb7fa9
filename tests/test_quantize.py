"""INT8 that keeps every zero, the IR directory it lands in, and the runtime's account of what ran,
on tiny generated 90%-sparse BERT and DistilBERT (hidden 64: every layer eligible for sparse kernels)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import linear_weights, sparsify, tiny_recipe

from pofa_openvino import RecipeError, run
from pofa_openvino.runtime.model import SparseModel, cpu, int8_weights

pytestmark = pytest.mark.slow


def _quantized_run(model_dir, tmp_path, approach: str = "static", **quantization):
    sparse = sparsify(model_dir, tmp_path / "sparse", fraction=0.9)
    recipe = tiny_recipe(sparse, pruning={"pruning_type": "pattern_lock"},
                         quantization={"approach": approach, "calibration_sampling_size": 16, **quantization},
                         export={"sparse_weights_decompression_rate": "auto"})
    return run(recipe, output_dir=tmp_path / "run")


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_static_int8_keeps_every_zero_and_reports_what_the_cpu_ran(model, tmp_path, request):
    result = _quantized_run(request.getfixturevalue(model), tmp_path)
    report, ir_dir = result.report, result.run_dir / "openvino"
    assert result.ran[-2:] == ["export", "quantize"]

    # Independently of the stage's own check: every exact zero of the float weights is an INT8 zero.
    floats = {name: w.numpy() for name, w in linear_weights(result.run_dir / "checkpoint").items()}
    deployed = SparseModel(ir_dir)
    weights = {w.source: w for w in int8_weights(deployed.model)}
    pruned = [layer["name"] for layer in report["sparsity"]["layers"] if layer["prunable"]]
    assert pruned and set(pruned) <= set(weights)
    for name in pruned:
        assert not ((floats[name] == 0) & (weights[name].values != 0)).any(), name
        assert weights[name].zero_fraction >= (floats[name] == 0).mean() >= 0.85
    layers = {layer["name"]: layer for layer in report["sparsity"]["layers"]}
    assert all(layers[name]["eligible_for_sparse"] and layers[name]["int8_zero_fraction"] >= 0.85 for name in pruned)

    config = json.loads((ir_dir / "runtime_config.json").read_text())
    rate = float(config["CPU"]["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"])
    assert rate == report["runtime"]["sparse_rate"] == np.floor(min(layers[n]["int8_zero_fraction"]
                                                                    for n in pruned) * 20) / 20
    runtime = report["runtime"]
    assert runtime["amx"] == cpu()["amx"] and runtime["sparse_layers_eligible"] == len(pruned)
    assert sum(runtime["kernel_types"].values()) == len(weights)
    if not runtime["amx"]:
        assert runtime["sparse_layers_active"] == 0 and "no AMX" in runtime["note"]
    else:
        assert runtime["sparse_layers_active"] > 0

    assert report["parity"]["max_abs_logit_diff"] < 1e-3
    accuracy = report["accuracy"]
    assert {"torch_fp32", "openvino_fp32", "openvino_int8", "delta"} <= set(accuracy)
    assert accuracy["openvino_fp32"] == accuracy["torch_fp32"]
    assert "OpenVINO INT8" in (result.run_dir / "report.md").read_text()


def test_the_ir_directory_loads_in_optimum_intel_and_benchmark_app(tiny_bert, tmp_path):
    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    result = _quantized_run(tiny_bert, tmp_path)
    ir_dir = result.run_dir / "openvino"
    config = json.loads((ir_dir / "runtime_config.json").read_text())
    model = OVModelForSequenceClassification.from_pretrained(ir_dir, ov_config=config["CPU"])
    tokenizer = AutoTokenizer.from_pretrained(ir_dir)
    inputs = tokenizer(["a good film", "a bad film"], return_tensors="np", padding=True)
    ours = SparseModel(ir_dir).infer(dict(inputs))["logits"]
    assert np.allclose(model(**inputs).logits, ours, atol=1e-4)

    shapes = ",".join(f"{name}[1,32]" for name in ("input_ids", "attention_mask", "token_type_ids"))
    bench = subprocess.run([str(Path(sys.executable).parent / "benchmark_app"), "-m",
                            str(ir_dir / "openvino_model.xml"), "-load_config", str(ir_dir / "runtime_config.json"),
                            "-t", "3", "-shape", shapes], capture_output=True, text=True, timeout=120)
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    assert "Throughput" in bench.stdout


def test_weight_only_int8_keeps_zeros_and_says_sparse_kernels_cannot_apply(tiny_bert, tmp_path, caplog):
    result = _quantized_run(tiny_bert, tmp_path, approach="weight_only")
    assert result.report["quantization"]["approach"] == "weight_only"
    assert result.report["runtime"]["sparse_layers_active"] == 0
    assert "sparse weight decompression needs INT8 activations too" in caplog.text


def test_op_name_dict_keeps_named_layers_float_and_smooth_quant_keeps_zeros(tiny_bert, tmp_path):
    fp32 = {"activation": {"dtype": ["fp32"]}, "weight": {"dtype": ["fp32"]}}
    result = _quantized_run(tiny_bert, tmp_path, op_name_dict={"classifier": fp32, r"bert\.pooler\..*": fp32},
                            recipes={"smooth_quant": True, "smooth_quant_args": {"alpha": 0.6}})
    sources = {w.source for w in int8_weights(SparseModel(result.run_dir / "openvino").model)}
    assert "classifier" not in sources and "bert.pooler.dense" not in sources
    assert "bert.encoder.layer.0.attention.self.query" in sources
    assert result.report["quantization"]["zeros_revived"] == 0


def test_accuracy_control_keeps_the_metric_within_the_criterion_and_lists_float_layers(tiny_bert, tmp_path):
    result = _quantized_run(tiny_bert, tmp_path, accuracy_criterion={"criterion": "absolute", "tolerable_loss": 0.0})
    accuracy, quantization = result.report["accuracy"], result.report["quantization"]
    assert accuracy["openvino_int8"]["accuracy"] >= accuracy["openvino_fp32"]["accuracy"]
    assert quantization["accuracy_criterion"] == {"criterion": "absolute", "tolerable_loss": 0.0}
    assert quantization["zeros_revived"] == 0 and isinstance(quantization["layers_float"], list)


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_distilbert"])
def test_qat_trains_the_fake_quantized_model_with_locked_masks_and_keeps_every_zero(model, tmp_path, request):
    result = _quantized_run(request.getfixturevalue(model), tmp_path, approach="qat", calibration_sampling_size=8)
    floats = {name: w.numpy() for name, w in linear_weights(result.run_dir / "checkpoint").items()}
    weights = {w.source: w for w in int8_weights(SparseModel(result.run_dir / "openvino").model)}
    pruned = [layer["name"] for layer in result.report["sparsity"]["layers"] if layer["prunable"]]
    for name in pruned:
        assert not ((floats[name] == 0) & (weights[name].values != 0)).any(), name
    assert result.report["quantization"]["approach"] == "qat" and result.report["quantization"]["zeros_revived"] == 0
    assert "openvino_int8" in result.report["accuracy"] and result.report["runtime"]["sparse_rate"] >= 0.85


@pytest.mark.parametrize("training, setting, key", [
    (None, {"approach": "qat"}, "quantization.approach"),
    ({"max_steps": 2}, {"approach": "qat", "op_name_dict": {"classifier": {"weight": {"dtype": ["fp32"]}}}},
     "quantization.approach"),
    ({"max_steps": 2}, {"approach": "weight_only", "accuracy_criterion": {"tolerable_loss": 0.01}},
     "quantization.accuracy_criterion")])
def test_quantization_settings_that_cannot_apply_are_refused_before_anything_runs(tiny_bert, tmp_path, training,
                                                                                 setting, key):
    with pytest.raises(RecipeError, match=key):
        run(tiny_recipe(tiny_bert, training=training, quantization=setting), output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
