"""The shipped quickstart runs on the real offline MiniLM weights (a few steps here; `make demo` runs it all)."""

from pathlib import Path

import pytest

from pofa_openvino import run

QUICKSTART = Path(__file__).parents[1] / "recipes" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_runs_offline_on_real_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(QUICKSTART, output_dir=tmp_path / "run", overrides=["training.max_steps=3",
                                                                       "benchmark.duration_s=0.05"])
    assert result.report["model"]["architecture"] == "bert"
    assert result.report["model"]["parameters"] > 20_000_000  # the real 22.7M MiniLM, not a toy
    assert result.report["training"]["steps"] == 3
    assert (result.run_dir / "checkpoint" / "model.safetensors").is_file()
    assert result.ran[-4:] == ["export", "quantize", "benchmark", "package"]
    assert (result.run_dir / "openvino" / "openvino_model.xml").is_file()
    assert (result.run_dir / "openvino" / "runtime_config.json").is_file()
    assert {"torch_fp32", "openvino_fp32", "openvino_int8"} <= set(result.report["accuracy"])
    assert result.report["quantization"]["zeros_revived"] == 0 and result.report["runtime"]["note"]
    assert {"torch_fp32", "openvino_int8"} <= set(result.report["benchmark"]["variants"])
    # It ends with a verified bundle and its archive.
    assert result.report["package"]["selftest"]["samples"] == 4 and (result.run_dir / "package.tar.gz").is_file()
