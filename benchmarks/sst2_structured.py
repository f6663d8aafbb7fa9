"""Benchmark: the structured SST-2 MiniLM model (heads and FFN neurons removed by INC while distilling
from the dense model, then slimmed; ``benchmarks/recipes/sst2-minilm-structured-distill.yaml``) against the dense
model, both INT8: SST-2 dev accuracy of each, and the speed of PyTorch FP32 (dense), OpenVINO INT8
dense and OpenVINO INT8 slimmed, measured in this one process.

    .venv/bin/python benchmarks/sst2_structured.py [--runs runs/bench]   # ~8 min on 2 cores, CPU otherwise idle

Needs the finished runs ``sst2-minilm-dense`` and ``sst2-minilm-structured-distill`` under ``--runs``;
the dense checkpoint's INT8 IR comes from ``sst2-minilm-deploy.yaml`` (run here, resumable). Results:
``benchmarks/results/sst2_structured.{json,md}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_cli import runs_arguments

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEPLOY = HERE / "recipes" / "sst2-minilm-deploy.yaml"


def main() -> None:
    args = runs_arguments(__doc__.splitlines()[0])
    import pofa_openvino
    from pofa_openvino.bench import LABELS, Settings, Variant, benchmark, ir_variants
    from pofa_openvino.charts import write_charts
    from pofa_openvino.report import benchmark_markdown
    from pofa_openvino.rundir import read_json

    dense_checkpoint = args.runs / "sst2-minilm-dense" / "checkpoint"
    structured = args.runs / "sst2-minilm-structured-distill"
    dense = pofa_openvino.run(DEPLOY, output_dir=args.runs / "sst2-minilm-dense-deploy", resume=True,
                              overrides=["name=sst2-minilm-dense-deploy", f"model.name_or_path={dense_checkpoint}",
                                         "benchmark=null"]).report
    report = read_json(structured / "report.json")
    slim = ir_variants(structured / "openvino", "text-classification")[0]
    slim.name = "openvino_int8_structured"
    LABELS[slim.name] = "OpenVINO INT8, heads and FFN neurons removed (slimmed)"
    variants = [Variant("torch_fp32", "torch", dense_checkpoint),
                ir_variants(args.runs / "sst2-minilm-dense-deploy" / "openvino", "text-classification")[0], slim]
    result = benchmark(variants, Settings(duration_s=args.duration))
    result["charts"] = write_charts(result, RESULTS, "sst2_structured")
    accuracy = {"dense": dense["accuracy"], "structured": report["accuracy"]}
    points = {kind: 100 * (accuracy["structured"][kind]["accuracy"] - accuracy["dense"]["torch_fp32"]["accuracy"])
              for kind in ("torch_fp32", "openvino_int8")}
    speed = result["ratios"]["vs_openvino_int8"]["openvino_int8_structured"]["latency_speedup"]
    eager = result["ratios"]["vs_torch_fp32"]["openvino_int8_structured"]["latency_speedup"]
    summary = {"structure": report["structure"], "training": report["training"], "accuracy": accuracy,
               "points_vs_dense_fp32": points, "speedup_vs_dense_int8": speed, "speedup_vs_torch_fp32": eager,
               "benchmark": result}
    (RESULTS / "sst2_structured.json").write_text(json.dumps(summary, indent=2) + "\n")
    tradeoff_chart(summary, RESULTS / "sst2_structured" / "speed_accuracy.png")
    structure = report["structure"]
    kept = ", ".join(f"{layer['heads']}/{layer['intermediate_size']}" for layer in structure["layers"])
    table = [f"| {name} | {accuracy[name]['torch_fp32']['accuracy']:.4f} | "
             f"{accuracy[name]['openvino_int8']['accuracy']:.4f} |" for name in ("dense", "structured")]
    lines = [f"# SST-2 MiniLM: structured (heads and FFN neurons removed) vs dense, INT8 ({result['date'][:10]})", "",
             f"Kept per layer (heads / FFN neurons): {kept}; {structure['flops_ratio']:.2f}x fewer encoder FLOPs at "
             f"128 tokens; {structure['parameters_before'] / 1e6:.1f}M -> {structure['parameters_after'] / 1e6:.1f}M "
             "parameters.", "", "| model (SST-2 dev accuracy) | torch FP32 | OpenVINO INT8 |", "|---|---:|---:|",
             *table, "",
             f"Structured vs dense FP32 (points): torch FP32 {points['torch_fp32']:+.2f}, INT8 "
             f"{points['openvino_int8']:+.2f}. Slimmed INT8 vs dense INT8: "
             + ", ".join(f"{speed[n]:.2f}x at {n}" for n in speed) + "; vs PyTorch FP32 eager (dense): "
             + ", ".join(f"{eager[n]:.2f}x at {n}" for n in eager) + " tokens.", "",
             "![speed and accuracy](sst2_structured/speed_accuracy.png)", "", *benchmark_markdown(result)[2:]]
    (RESULTS / "sst2_structured.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


POINTS = {  # chart point -> (accuracy entry, its metric key, benchmark variant, label offset in points)
    "PyTorch FP32, dense": ("dense", "torch_fp32", "torch_fp32", (-120, -8)),
    "OpenVINO INT8, dense": ("dense", "openvino_int8", "openvino_int8", (8, 10)),
    "OpenVINO INT8, structured (slimmed)": ("structured", "openvino_int8", "openvino_int8_structured", (8, -26)),
}


def tradeoff_chart(summary: dict, out: Path, length: str = "128") -> None:
    """SST-2 dev accuracy against median latency at ``length`` tokens, each point's speed from the
    one-process benchmark of the same summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, (model, runner, variant, offset) in POINTS.items():
        latency = summary["benchmark"]["variants"][variant]["latency_ms"][length]["median_ms"]
        accuracy = summary["accuracy"][model][runner]["accuracy"]
        axes.scatter([latency], [100 * accuracy], s=60)
        axes.annotate(f"{label}\n{latency:.2f} ms, {100 * accuracy:.2f}%", (latency, 100 * accuracy),
                      textcoords="offset points", xytext=offset, fontsize=8)
    axes.set_xlim(left=0)
    axes.set_xlabel(f"median latency at {length} tokens, batch 1, ms")
    axes.set_ylabel("SST-2 dev accuracy, %")
    axes.set_title("SST-2 MiniLM: speed and accuracy, measured here", fontsize=10)
    axes.margins(x=0.15, y=0.6)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
