"""Benchmark: three routes to an SST-2 MiniLM with the same fine-tuning budget (one epoch, 2105 optimizer
steps, batch 32, LR 1e-4, distilling from the dense SST-2 model where sparse):

    (a) prune during fine-tuning: INC snip_momentum to 90% while fine-tuning (sst2-minilm-sparse90-distill)
    (b) prune once, then fine-tune with the zeros locked: recipes/prune-once-minilm.yaml, then
        sst2-minilm-pruneonce90-distill (pattern_lock)
    (c) dense (sst2-minilm-dense)

(a) and (c) are the recorded runs of ``sst2_sparse_finetune.py`` (results/sst2_sparse_finetune.json);
this script runs (b) through the public API and records all three with machine, versions and date.

    .venv/bin/python benchmarks/prune_once_minilm.py      # ~1.5 h on 2 cores; re-running resumes

Needs ``../shared/data`` and the dense SST-2 run of ``sst2_sparse_finetune.py`` (the teacher) in
``runs/bench/sst2-minilm-dense``. Results: ``benchmarks/results/prune_once_minilm.{json,md}``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pofa_openvino

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from sst2_sparse_finetune import LIBRARIES, machine, summary  # noqa: E402

PRETRAIN = "prune-once-minilm"
TRANSFER = "sst2-minilm-pruneonce90-distill"
RECORDED = {"a": "sst2-minilm-sparse90-distill", "c": "sst2-minilm-dense"}
ROUTES = {"a": "prune during fine-tuning (snip_momentum 90%, distilled)",
          "b": "prune once (hidden-state distillation), then fine-tune locked (distilled)",
          "c": "dense fine-tuning"}


def markdown(results: dict[str, object]) -> str:
    rows = []
    for key, route in results["routes"].items():
        minutes = " + ".join(f"{route[k] / 60:.1f}" for k in ("pretrain_seconds", "train_seconds") if k in route)
        rows.append(f"| ({key}) {ROUTES[key]} | {route['sparsity_overall']:.2%} | {route['dev_accuracy']:.4f} | "
                    f"{route['steps']} | {minutes} |")
    pretrain = results["pretrain"]
    return "\n".join([
        f"# Prune once vs prune during fine-tuning: MiniLM on SST-2 ({results['date']})", "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['logical_cores']} logical cores "
        f"(AMX: {'yes' if results['machine']['amx'] else 'no'}). Commit `{results['commit']}`.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", "",
        "| route | sparsity (prunable Linear) | SST-2 dev accuracy | fine-tuning steps | minutes (prune once + "
        "fine-tune) |", "|---|---|---|---|---|", *rows, "",
        f"Prune once: {pretrain['loss']}; {pretrain['steps']} steps on {pretrain['texts']} texts "
        f"(SST-2 train sentences, labels unused, and SQuAD dev-subset contexts); held-out loss "
        f"{pretrain['held_out_loss_before']:.4g} (dense) -> {pretrain['held_out_loss_after']:.4g}.",
        f"(b) - (a): **{results['b_minus_a']:+.4f}** accuracy; (c) - (b): {results['c_minus_b']:+.4f}.", ""])


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pretrained = pofa_openvino.run(ROOT / "recipes" / f"{PRETRAIN}.yaml", output_dir=ROOT / "runs" / "bench" / PRETRAIN,
                                   resume=True).report["pretrain"]
    transfer = pofa_openvino.run(HERE / "recipes" / f"{TRANSFER}.yaml", output_dir=ROOT / "runs" / "bench" / TRANSFER,
                                 resume=True)
    recorded = json.loads((HERE / "results" / "sst2_sparse_finetune.json").read_text())
    routes = {key: recorded["runs"][name] for key, name in RECORDED.items()}
    routes["b"] = {**summary(TRANSFER, transfer), "pretrain_seconds": pretrained["training"]["seconds"]}
    results = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(),
        "versions": {lib: metadata.version(lib) for lib in LIBRARIES},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "pretrain": {"loss": pretrained["loss"], "steps": pretrained["training"]["steps"],
                     "texts": pretrained["texts"], "held_out_loss_before": pretrained["held_out_loss_before"],
                     "held_out_loss_after": pretrained["training"]["history"][-1]["held_out_loss"],
                     "sparsity": pretrained["checkpoint"]["sparsity"]},
        "routes": {key: routes[key] for key in ROUTES},
        "recorded_from": "results/sst2_sparse_finetune.json (routes a and c)"}
    accuracy = {key: route["dev_accuracy"] for key, route in routes.items()}
    results["b_minus_a"] = round(accuracy["b"] - accuracy["a"], 4)
    results["c_minus_b"] = round(accuracy["c"] - accuracy["b"], 4)
    out = HERE / "results" / "prune_once_minilm"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
