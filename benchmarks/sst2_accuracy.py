"""Benchmark record: SST-2 dev accuracy per training route (issue 19), read from finished runs.

    .venv/bin/python benchmarks/sst2_accuracy.py --commit SHA [--runs runs/bench] ROUTE=RUN [ROUTE=RUN ...]

``ROUTE=RUN`` records the model that run trained (its sparsity counted from its tensors by the run, its torch
FP32 and OpenVINO INT8 accuracy, its training budget). ``ROUTE=RUN/teacher`` records the dense teacher a run
trained with ``distillation.teacher: auto``; its sparsity and INT8 accuracy come from ``sst2-minilm-dense-deploy``
(written by ``sst2_structured.py``, which takes that teacher through INT8). A run that starts from a prune-once
run's ``pretrained/`` model also records that run's pre-training budget. ``--commit`` is the commit whose
code trained the runs. Results: ``benchmarks/results/sst2_accuracy.json``, one entry per route; recording a
route again replaces its entry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_cli import RUNS, absolute

from pofa_openvino.rundir import LAYOUT
from pofa_openvino.rundir import read_json as read

RESULTS = Path(__file__).resolve().parent / "results" / "sst2_accuracy.json"
TEACHER = "teacher"
DENSE_DEPLOY = "sst2-minilm-dense-deploy"


def entry(route: str, run: str, runs: Path, commit: str) -> dict:
    """One route's figures, from the run's report.json (and the dense deploy run's, for a teacher)."""
    name, _, part = run.partition("/")
    report = read(runs / name / "report.json")
    if part == TEACHER:
        trained = report["teacher"]
        deployed = read(runs / DENSE_DEPLOY / "report.json")
        fp32, training = trained["torch_fp32"]["accuracy"], trained["training"]
        int8, sparsity = deployed["accuracy"]["openvino_int8"]["accuracy"], deployed["sparsity"]["overall"]
    else:
        fp32, training = report["accuracy"]["torch_fp32"]["accuracy"], report["training"]
        int8, sparsity = report["accuracy"]["openvino_int8"]["accuracy"], report["sparsity"]["overall"]
    return {"route": route, "run": run, "recipe": read(runs / name / "manifest.json")["recipe_source"],
            "sparsity": sparsity, "fewer_flops": None if part else (report.get("structure") or {}).get("flops_ratio"),
            "dev_accuracy_fp32": fp32, "dev_accuracy_int8": int8, "epochs": training["epochs"],
            "steps": training["steps"], "minutes": round(training["seconds"] / 60, 1), **resumed(training),
            "mixed_precision": training.get("mixed_precision"), **pretraining(report), "commit": commit}


def resumed(training: dict) -> dict:
    """A resumed run's resume step: before commit aa16227 its ``minutes`` count only the steps after it."""
    step = training.get("resumed_from_step", 0)
    return {"resumed_from_step": step} if step else {}


def pretraining(report: dict) -> dict:
    """The prune-once budget behind a run whose model is another run's ``pretrained/`` (nothing otherwise)."""
    start = Path(report["model"]["path"])
    source = start.parent / LAYOUT.report_json
    pretrain = read(source).get("pretrain") if start.name == LAYOUT.pretrained and source.exists() else None
    if pretrain is None:
        return {}
    return {"pretrain": {"run": start.parent.name, "steps": pretrain["training"]["steps"],
                         "minutes": round(pretrain["training"]["seconds"] / 60, 1),
                         "schedule": pretrain["schedule"], "loss": pretrain["loss"], "texts": pretrain["texts"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("routes", nargs="+", metavar="ROUTE=RUN")
    parser.add_argument("--runs", type=absolute, default=RUNS)
    parser.add_argument("--commit", required=True, help="the commit whose code trained these runs")
    args = parser.parse_args()
    recorded = {e["route"]: e for e in (read(RESULTS)["routes"] if RESULTS.exists() else [])}
    for pair in args.routes:
        route, _, run = pair.partition("=")
        recorded[route] = entry(route, run, args.runs, args.commit)
        print(json.dumps(recorded[route]))
    RESULTS.write_text(json.dumps({"dataset": "SST-2 dev (872)", "model": "all-MiniLM-L6-v2",
                                   "routes": list(recorded.values())}, indent=2) + "\n")


if __name__ == "__main__":
    main()
