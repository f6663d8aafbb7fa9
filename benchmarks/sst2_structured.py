"""Benchmark: the SST-2 MiniLM speed/accuracy frontier. The dense model, the 90%-unstructured model and the
structured models (heads and FFN neurons removed by INC while distilling from the dense model, then slimmed),
all INT8, side by side: SST-2 dev accuracy of each (from its run), and the speed of PyTorch FP32 (dense) and
of every OpenVINO INT8 model, measured in this one process.

    .venv/bin/python benchmarks/sst2_structured.py [--runs runs/bench] [--structured RUN ...]   # CPU otherwise idle

Needs, under ``--runs``, the finished ``sst2-minilm-teacher-auto90`` run (its ``teacher/`` is the dense model,
its INT8 IR the 90%-unstructured one; ``--unstructured ''`` leaves it out) and every ``--structured`` run
(default ``sst2-minilm-structured70-distill``). The dense model's INT8 IR and accuracy come from
``sst2-minilm-deploy.yaml``, run here on it (resumable). Results: ``benchmarks/results/<--name>.{json,md}`` and
a chart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_cli import RUNS, absolute, show_logs

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEPLOY = HERE / "recipes" / "sst2-minilm-deploy.yaml"
DENSE = "dense"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=absolute, default=RUNS)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per variant and length")
    parser.add_argument("--dense-run", default="sst2-minilm-teacher-auto90",
                        help="the run whose teacher/ is the dense SST-2 model")
    parser.add_argument("--unstructured", default="sst2-minilm-teacher-auto90",
                        help="the 90%%-unstructured run ('' leaves it out)")
    parser.add_argument("--structured", nargs="*", default=["sst2-minilm-structured70-distill"],
                        help="structured runs (none: only dense and unstructured)")
    parser.add_argument("--name", default="sst2_frontier", help="results file name")
    args = parser.parse_args()
    show_logs()
    return args


def main() -> None:
    args = arguments()
    import pofa_openvino
    from pofa_openvino.bench import LABELS, Settings, Variant, benchmark, ir_variants
    from pofa_openvino.charts import write_charts
    from pofa_openvino.report import benchmark_markdown
    from pofa_openvino.rundir import read_json

    dense_checkpoint = args.runs / args.dense_run / "teacher"
    deploy = args.runs / "sst2-minilm-dense-deploy"
    reports = {DENSE: pofa_openvino.run(DEPLOY, output_dir=deploy, resume=True,
                                        overrides=["name=sst2-minilm-dense-deploy",
                                                   f"model.name_or_path={dense_checkpoint}", "benchmark=null"]).report}
    runs = {DENSE: deploy, **({args.unstructured: args.runs / args.unstructured} if args.unstructured else {}),
            **{name: args.runs / name for name in args.structured}}
    variants = [Variant("torch_fp32", "torch", dense_checkpoint)]
    for model, run in runs.items():
        reports.setdefault(model, read_json(run / "report.json"))
        variant = ir_variants(run / "openvino", "text-classification")[0]
        if model != DENSE:
            variant.name = f"openvino_int8_{model}"
            LABELS[variant.name] = f"OpenVINO INT8, {describe(reports[model])}"
        variants.append(variant)
    result = benchmark(variants, Settings(duration_s=args.duration))
    result["charts"] = write_charts(result, RESULTS, args.name)
    summary = {"models": {model: model_summary(reports[model], result, variant.name)
                          for model, variant in zip(runs, variants[1:], strict=True)},
               "torch_fp32_dense": {"accuracy": reports[DENSE]["accuracy"]["torch_fp32"]["accuracy"]},
               "benchmark": result}
    for entry in summary["models"].values():
        entry["points_vs_dense_fp32"] = 100 * (entry["openvino_int8"] - summary["torch_fp32_dense"]["accuracy"])
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    frontier_chart(summary, RESULTS / args.name / "speed_accuracy.png")
    lines = [f"# SST-2 MiniLM: the speed/accuracy frontier, INT8 ({result['date'][:10]})", "",
             "| model | kept per layer (heads / FFN) | torch FP32 | OpenVINO INT8 | INT8 vs dense FP32 | "
             "speed vs dense INT8 at 32 / 128 / 384 tokens |", "|---|---|---:|---:|---:|---|",
             *(table_row(model, entry) for model, entry in summary["models"].items()), "",
             f"![speed and accuracy]({args.name}/speed_accuracy.png)", "", *benchmark_markdown(result)[2:]]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def describe(report: dict) -> str:
    """What was removed from the model, in a few words."""
    structure = report.get("structure")
    if structure:
        return f"slimmed, {structure['flops_ratio']:.2f}x fewer encoder FLOPs"
    return f"{100 * report['sparsity']['overall']:.0f}% unstructured"


def model_summary(report: dict, result: dict, variant: str) -> dict:
    """One model's accuracy (from its run), structure and measured speed against dense INT8."""
    structure = report.get("structure")
    return {"variant": variant, "description": describe(report) if variant != "openvino_int8" else "dense",
            "sparsity": report.get("sparsity", {}).get("overall"),
            "kept": ([f"{layer['heads']}/{layer['intermediate_size']}" for layer in structure["layers"]]
                     if structure else None),
            "torch_fp32": report["accuracy"]["torch_fp32"]["accuracy"],
            "openvino_int8": report["accuracy"]["openvino_int8"]["accuracy"],
            "latency_ms": {length: figures["median_ms"]
                           for length, figures in result["variants"][variant]["latency_ms"].items()},
            "speedup_vs_dense_int8": (result["ratios"]["vs_openvino_int8"].get(variant, {}).get("latency_speedup")
                                      if variant != "openvino_int8" else None),
            "training": report.get("training")}


def table_row(model: str, entry: dict) -> str:
    speed = entry["speedup_vs_dense_int8"]
    kept = ", ".join(sorted(set(entry["kept"]))) if entry["kept"] else "all"
    return (f"| {model} ({entry['description']}) | {kept} | {entry['torch_fp32']:.4f} | {entry['openvino_int8']:.4f} "
            f"| {entry['points_vs_dense_fp32']:+.2f} points | "
            + (" / ".join(f"{speed[n]:.2f}x" for n in ("32", "128", "384") if n in speed) if speed else "1.00x")
            + " |")


def frontier_chart(summary: dict, out: Path, length: str = "128") -> None:
    """SST-2 dev accuracy (INT8) against median INT8 latency at ``length`` tokens: the models a user chooses
    from, each point's speed from the one-process benchmark of the same summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for model, entry in summary["models"].items():
        latency, accuracy = entry["latency_ms"][length], 100 * entry["openvino_int8"]
        axes.scatter([latency], [accuracy], s=60)
        axes.annotate(f"{model}\n{latency:.2f} ms, {accuracy:.2f}%", (latency, accuracy),
                      textcoords="offset points", xytext=(8, -4), fontsize=8)
    axes.axhline(100 * summary["torch_fp32_dense"]["accuracy"], color="grey", linestyle=":", linewidth=1)
    axes.set_xlim(left=0)
    axes.set_xlabel(f"OpenVINO INT8 median latency at {length} tokens, batch 1, ms")
    axes.set_ylabel("SST-2 dev accuracy (INT8), %; dotted: dense FP32")
    axes.set_title("SST-2 MiniLM: speed and accuracy, measured here", fontsize=10)
    axes.margins(x=0.3, y=0.6)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
