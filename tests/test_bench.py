"""The benchmark: every variant a run produced, measured in one process, recorded with its machine and
versions, ratios that are the ratios of their own figures, charts, and the ``bench`` command on runs,
IR directories and checkpoints. No timing is asserted: timings belong to benchmarks/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import sparsify, tiny_recipe

from pofa_openvino import run
from pofa_openvino.bench import BASELINES, LABELS
from pofa_openvino.cli import main

pytestmark = pytest.mark.slow

QUICK = {"sequence_lengths": [8, 16], "duration_s": 0.05, "threads": 1}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def benchmarked(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    recipe = tiny_recipe(sparsify(tiny_bert, tmp / "sparse", fraction=0.9), pruning={"pruning_type": "pattern_lock"},
                         quantization={"approach": "static", "calibration_sampling_size": 16},
                         export={"sparse_weights_decompression_rate": 0.8}, benchmark=QUICK)
    return run(recipe, output_dir=tmp / "run")


def _check_ratios(bench: dict) -> None:
    """Every ratio is recomputed from the figures it compares."""
    variants = bench["variants"]
    assert set(bench["ratios"]) == {f"vs_{b}" for b in BASELINES if b in variants}
    for key, table in bench["ratios"].items():
        base = variants[key.removeprefix("vs_")]
        assert set(table) == set(variants) - {key.removeprefix("vs_")}
        for name, ratio in table.items():
            figures = variants[name]
            for length, speedup in ratio["latency_speedup"].items():
                expected = base["latency_ms"][length]["median_ms"] / figures["latency_ms"][length]["median_ms"]
                assert math.isclose(speedup, expected, rel_tol=1e-12)
            assert math.isclose(ratio["throughput"],
                                figures["throughput"]["items_per_s"] / base["throughput"]["items_per_s"], rel_tol=1e-12)
            assert math.isclose(ratio["size"], figures["size_bytes"] / base["size_bytes"], rel_tol=1e-12)
            if "peak_rss" in ratio:
                assert math.isclose(ratio["peak_rss"], figures["peak_rss_mb"] / base["peak_rss_mb"], rel_tol=1e-12)


def _check_figures(bench: dict, lengths: list[int]) -> None:
    assert bench["settings"]["sequence_lengths"] == lengths
    assert bench["settings"]["threads"] == bench["machine"]["cores_used"] == 1
    assert bench["machine"]["cpu"] and set(bench["machine"]["flags"]) >= {"amx", "avx512_vnni", "avx512_bf16"}
    assert 0.0 <= bench["machine"]["other_processes_cpu_share"] <= 1.0  # what else used the CPU meanwhile
    assert bench["versions"]["openvino"] and bench["versions"]["pofa-openvino"]
    for name, figures in bench["variants"].items():
        assert figures["label"] == LABELS[name]
        assert set(figures["latency_ms"]) == {str(n) for n in lengths}
        for latency in figures["latency_ms"].values():
            assert 0 < latency["median_ms"] <= latency["p90_ms"] and latency["runs"] >= 10
        assert figures["throughput"]["items_per_s"] > 0 and figures["size_bytes"] > 0 and figures["compile_s"] > 0
        assert figures["peak_rss_mb"] is not None and figures["process_peak_rss_mb"] >= figures["peak_rss_mb"]


def _check_real_text(bench: dict, texts: int) -> None:
    """The evaluation texts, each at its own length: figures from at least one pass over all of them,
    padding only in the sorted batches, async only where the engine has async requests."""
    tokens = bench["real_text"]["tokens"]
    assert bench["real_text"]["texts"] == texts and 1 < tokens["median"] <= tokens["p99"] <= tokens["max"] <= 512
    at = str(bench["settings"]["throughput_sequence_length"])
    for name, figures in bench["variants"].items():
        real = figures["real_text"]
        assert real["batch1"]["runs"] >= texts and 0 < real["batch1"]["median_ms"] <= real["batch1"]["p99_ms"]
        assert math.isclose(real["padded"]["sentences_per_s"], 1e3 / figures["latency_ms"][at]["mean_ms"])
        assert math.isclose(real["batch1"]["sentences_per_s"], 1e3 / real["batch1"]["mean_ms"])  # same statistic
        assert real["sorted_batches"]["sentences_per_s"] > 0 and 0 <= real["sorted_batches"]["padding_share"] < 0.5
        assert ("async" in real) == (figures["engine"] == "openvino"), name


def test_benchmark_stage_measures_every_variant_of_the_run(benchmarked):
    report, run_dir = benchmarked.report, benchmarked.run_dir
    assert benchmarked.ran[-3:] == ["export", "quantize", "benchmark"]
    bench = report["benchmark"]
    assert list(bench["variants"]) == list(LABELS)  # torch, OpenVINO FP32, default, INT8 dense, INT8 sparse
    _check_figures(bench, [8, 16])
    _check_ratios(bench)
    variants = bench["variants"]
    assert variants["torch_fp32"]["path"] == "checkpoint" and variants["openvino_int8"]["path"] == "openvino"
    assert variants["openvino_fp32"]["precision"] == "f32"
    assert variants["openvino_int8"]["size_bytes"] < variants["openvino_fp32"]["size_bytes"]
    # The sparse variant carries the kernels the CPU executed; the dense one ran with the rate off.
    sparse, dense = variants["openvino_int8_sparse"]["runtime"], variants["openvino_int8"]["runtime"]
    assert sparse["sparse_rate"] == 0.8 and dense["sparse_rate"] is None
    assert sparse["sparse_layers_active"] == 0 if not sparse["amx"] else sparse["sparse_layers_active"] > 0
    assert dense["sparse_layers_active"] == 0

    _check_real_text(bench, texts=64)
    for chart in bench["charts"].values():
        assert (run_dir / chart).read_bytes()[:8] == PNG
    markdown = (run_dir / "report.md").read_text()
    assert "## Benchmark" in markdown and "![latency](benchmark/latency.png)" in markdown
    assert "Real text: 64 texts, each tokenized alone" in markdown
    assert f"{variants['openvino_int8']['latency_ms']['16']['median_ms']:.2f} / " in markdown
    assert json.loads((run_dir / "report.json").read_text())["benchmark"] == bench


def test_bench_command_on_a_run_records_it_in_the_report(benchmarked, capsys):
    run_dir = benchmarked.run_dir
    assert main(["bench", str(run_dir), "--seq-len", "8", "--duration", "0.02", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "PyTorch FP32" in printed and "report.md" in printed
    report = json.loads((run_dir / "report.json").read_text())
    assert report["benchmark"]["settings"]["sequence_lengths"] == [8]
    assert report["accuracy"] == benchmarked.report["accuracy"]  # the rest of the report is kept
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["benchmark"]["status"] == "done"
    _check_ratios(report["benchmark"])


def test_bench_command_on_an_ir_directory_and_a_checkpoint(benchmarked, tiny_bert, tmp_path):
    out = tmp_path / "ir-bench"
    args = ["--seq-len", "8", "--duration", "0.02", "--threads", "1"]
    assert main(["bench", str(benchmarked.run_dir / "openvino"), "-o", str(out), *args]) == 0
    bench = json.loads((out / "report.json").read_text())["benchmark"]
    assert list(bench["variants"]) == ["openvino_int8", "openvino_int8_sparse"]
    _check_ratios(bench)
    assert (out / "benchmark" / "size.png").read_bytes()[:8] == PNG

    # A non-empty output directory is never overwritten unasked.
    assert main(["bench", str(benchmarked.run_dir / "openvino"), "-o", str(out), *args]) == 1
    assert main(["bench", str(benchmarked.run_dir / "checkpoint"), "-o", str(out), "--force", *args]) == 0
    bench = json.loads((out / "report.json").read_text())["benchmark"]
    assert list(bench["variants"]) == ["torch_fp32", "openvino_fp32", "openvino_default"]
    assert (out / "openvino-fp32" / "openvino_model.xml").is_file()  # exported for the comparison
    _check_ratios(bench)


def test_bench_command_refuses_bad_targets_and_options(tmp_path, capsys):
    assert main(["bench", str(tmp_path)]) == 2  # bad input, as a command-line error
    assert "not a run directory" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--duration", "0"]) == 2  # a bad option is bad input
    assert "--duration" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--seq-len", "0"]) == 2
    assert "--seq-len" in capsys.readouterr().err


def test_sequence_lengths_beyond_the_model_are_skipped_and_said(benchmarked, tmp_path, caplog):
    from pofa_openvino.bench import Settings
    from pofa_openvino.bench_target import bench_target

    settings = Settings(sequence_lengths=(8, 4096), duration_s=0.02, threads=1)
    report, _ = bench_target(Path(benchmarked.run_dir / "openvino"), settings, output=tmp_path / "out")
    assert report["benchmark"]["settings"]["sequence_lengths"] == [8]
    assert "4096" in caplog.text


def test_verify_sees_the_loaded_engines_before_timing_and_can_stop_the_benchmark(benchmarked):
    from pofa_openvino.bench import Settings, benchmark, ir_variants

    variants = ir_variants(benchmarked.run_dir / "openvino", "text-classification")
    settings = Settings(sequence_lengths=(8,), duration_s=0.02, threads=1)
    seen = []

    def record(engines):
        seen.append(sorted(engines))
        assert all(hasattr(engine, "runner") for engine in engines.values())
        return {"outputs": "agree"}

    result = benchmark(variants, settings, verify=record)
    assert seen == [sorted(v.name for v in variants)] and result["checks"] == {"outputs": "agree"}
    assert "checks" not in benchmark(variants, settings)

    def refuse(engines):
        raise SystemExit("outputs disagree, nothing was timed")

    with pytest.raises(SystemExit, match="nothing was timed"):
        benchmark(variants, settings, verify=refuse)
