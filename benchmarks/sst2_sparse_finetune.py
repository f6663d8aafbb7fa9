"""Benchmark: all-MiniLM-L6-v2 on GLUE SST-2, dense vs 90% unstructured (INC gradual pruning of the
dense model, distilled from it). Runs the two recipes in ``benchmarks/recipes`` through the public API and records
dev accuracy, sparsity counted from the saved tensors, time, machine and versions.

    .venv/bin/python benchmarks/sst2_sparse_finetune.py      # ~1.7 h on 2 cores; re-running resumes

Needs ``../shared/data/sst2`` (GLUE SST-2 train/dev). Results: ``benchmarks/results/sst2_sparse_finetune.{json,md}``.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pofa_openvino

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPES = ("sst2-minilm-dense", "sst2-minilm-sparse90-distill")  # the second distils from the first
LIBRARIES = ("pofa-openvino", "torch", "transformers", "neural-compressor", "openvino")


def machine() -> dict[str, object]:
    """CPU model, logical cores and the instruction sets that matter for INT8 and sparse kernels."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    return {"cpu": model, "logical_cores": sum(line.startswith("processor") for line in cpuinfo.splitlines()),
            "avx512_vnni": "avx512_vnni" in flags, "amx": "amx_int8" in flags, "python": platform.python_version()}


def summary(name: str, result: pofa_openvino.RunResult) -> dict[str, object]:
    report = result.report
    training = report["training"]
    prunable = [layer for layer in report["sparsity"]["layers"] if layer["prunable"]]
    return {"recipe": f"benchmarks/recipes/{name}.yaml", "run_dir": str(result.run_dir.relative_to(ROOT)),
            "dev_accuracy": report["accuracy"]["torch_fp32"]["accuracy"],
            "sparsity_overall": report["sparsity"]["overall"],
            "min_layer_sparsity": min(layer["zero_fraction"] for layer in prunable),
            "steps": training["steps"], "epochs": training["epochs"], "train_seconds": training["seconds"],
            "history": training["history"]}


def markdown(results: dict[str, object]) -> str:
    dense, sparse = (results["runs"][n] for n in RECIPES)
    rows = [f"| {name} | {r['sparsity_overall']:.2%} | {r['dev_accuracy']:.4f} | {r['steps']} | "
            f"{r['train_seconds'] / 60:.1f} |" for name, r in results["runs"].items()]
    lines = [f"# SST-2 sparse fine-tuning benchmark ({results['date']})", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['logical_cores']} logical cores "
             f"(AMX: {'yes' if results['machine']['amx'] else 'no'}). Commit `{results['commit']}`.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", "",
             "| run | sparsity (prunable Linear) | SST-2 dev accuracy | optimizer steps | train minutes |",
             "|---|---|---|---|---|", *rows, "",
             f"Gap (dense - sparse): {results['gap']:.4f} accuracy points on the 872 dev sentences.",
             f"Lowest per-layer sparsity of the sparse model: {sparse['min_layer_sparsity']:.2%}.", ""]
    return "\n".join(lines)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results: dict[str, object] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(),
        "versions": {lib: metadata.version(lib) for lib in LIBRARIES},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "runs": {}}
    for name in RECIPES:
        result = pofa_openvino.run(HERE / "recipes" / f"{name}.yaml", output_dir=ROOT / "runs" / "bench" / name,
                                   resume=True)
        results["runs"][name] = summary(name, result)
    dense, sparse = (results["runs"][n]["dev_accuracy"] for n in RECIPES)
    results["gap"] = round(dense - sparse, 4)
    out = HERE / "results" / "sst2_sparse_finetune"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0 if sparse >= 0.80 else 1


if __name__ == "__main__":
    sys.exit(main())
