"""Benchmark: the SST-2 MiniLM checkpoints of ``sst2_sparse_finetune.py`` (dense, and 90% unstructured
from INC pruning with distillation) through export, NNCF INT8 and the benchmark stage: SST-2 dev
accuracy of PyTorch FP32, OpenVINO FP32 and INT8, and the speed of every variant, in one process each.

    .venv/bin/python benchmarks/sst2_minilm_speed.py [--runs runs/bench]   # ~15 min on 2 cores

Needs the two checkpoints under ``--runs`` and ``../shared/data/sst2``. Results:
``benchmarks/results/sst2_minilm_speed.{json,md}`` and the charts beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_cli import runs_arguments

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECIPE = HERE / "recipes" / "sst2-minilm-deploy.yaml"
CHECKPOINTS = ("sst2-minilm-dense", "sst2-minilm-sparse90-distill")


def main() -> None:
    args = runs_arguments(__doc__.splitlines()[0])
    import pofa_openvino
    from pofa_openvino.charts import write_charts
    from pofa_openvino.report import benchmark_markdown

    results, lines = {}, ["# SST-2 MiniLM: dense vs 90% sparse, deployed", ""]
    for name in CHECKPOINTS:
        overrides = [f"name={name}-deploy", f"model.name_or_path={args.runs / name / 'checkpoint'}",
                     f"benchmark.duration_s={args.duration}"]
        run = pofa_openvino.run(RECIPE, output_dir=args.runs / f"{name}-deploy", resume=True, overrides=overrides)
        report, bench = run.report, run.report["benchmark"]
        bench["charts"] = write_charts(bench, RESULTS, f"sst2_minilm_speed-{name}")
        results[name] = {key: report[key] for key in ("accuracy", "runtime", "quantization", "benchmark")}
        results[name]["sparsity"] = report["sparsity"]["overall"]
        scores = {key: value["accuracy"] for key, value in report["accuracy"].items() if isinstance(value, dict)}
        lines += [f"## {name} ({bench['date'][:10]})", "",
                  f"Encoder sparsity {report['sparsity']['overall']:.2%}. SST-2 dev accuracy: PyTorch FP32 "
                  f"{scores['torch_fp32']:.4f}, OpenVINO FP32 {scores['openvino_fp32']:.4f}, OpenVINO INT8 "
                  f"{scores['openvino_int8']:.4f} ({scores['delta']:+.4f}). {report['runtime']['note']}.", "",
                  *benchmark_markdown(bench)[2:], ""]
    (RESULTS / "sst2_minilm_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "sst2_minilm_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
