"""Peer engines beside OpenVINO INT8, in one process: ONNX Runtime FP32 and INT8, DeepSparse 1.8 FP32,
sparse INT8 and a densified INT8 control, with pofa-openvino's own measurement (interleaved latency
rounds, memory windows, ratios against OpenVINO INT8 dense).

Runs in the throwaway peers venv (``make peers``: DeepSparse pins an old onnx, so it cannot share the
toolkit's venv), which has the runtime-only install of pofa-openvino:

    benchmarks/.venv-peers/bin/python benchmarks/peers.py ONNX_DIR IR_DIR OUT.json [--duration 10]

``ONNX_DIR`` holds the toolkit's FP32 export (``model.onnx``, IR version <= 9, default opset domain),
``config.json`` and ``reference.npz`` (torch's logits on real token ids). Before anything is timed:
ONNX Runtime FP32 must match torch, every peer graph is built from the export (``peer_graphs``) into
``WORK_DIR/graphs/``, each variant runs on its own copy under ``WORK_DIR/variants/``, and every engine's
outputs on the reference inputs are compared with torch's. Afterwards the source graphs must be
unchanged (DeepSparse rewrites the input shapes of the file it compiles).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import peer_graphs
from bench_cli import show_logs

from pofa_openvino import bench
from pofa_openvino.runtime import tasks
from pofa_openvino.runtime.model import SPARSE_RATE

log = logging.getLogger("peers")

FP32_TOLERANCE = 1e-4  # max |logit difference| of an FP32 ONNX graph to torch (OpenVINO's IR gets 4e-7)
INT8_TOLERANCE = 0.05  # of the reference logits' range: an INT8 graph further off computes something else
CALIBRATION_RUNS = 8
GRAPHS = {  # variant -> (engine, graph it runs)
    "onnxruntime_fp32": ("onnxruntime", "fp32"),
    "onnxruntime_int8": ("onnxruntime", "int8"),
    "deepsparse_fp32": ("deepsparse", "fp32"),
    "deepsparse_int8": ("deepsparse", "int8"),
    "deepsparse_int8_densified": ("deepsparse", "int8_densified"),
}
LABELS = {
    "onnxruntime_fp32": "ONNX Runtime FP32",
    "onnxruntime_int8": "ONNX Runtime INT8 (same graph as DeepSparse INT8)",
    "deepsparse_fp32": "DeepSparse FP32 (sparse kernels)",
    "deepsparse_int8": "DeepSparse INT8 (sparse kernels)",
    "deepsparse_int8_densified": "DeepSparse INT8, zeros filled (control)",
}


class OnnxRuntimeEngine:
    files = ("model.onnx",)
    modules = ("onnxruntime",)

    def __init__(self, variant: bench.Variant, settings: bench.Settings):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = settings.cores, 1
        self.session = ort.InferenceSession(str(variant.path / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.precision = "int8" if variant.name.endswith("int8") else "f32"

    def runner(self, inputs: dict[str, np.ndarray]) -> Any:
        return lambda: self.session.run(None, inputs)

    def throughput(self, inputs: dict[str, np.ndarray], duration_s: float, batch_size: int) -> dict[str, Any]:
        return bench.sequential_throughput(self.runner(inputs), duration_s, batch_size)

    def describe(self) -> dict[str, Any] | None:
        return None


class DeepSparseEngine(OnnxRuntimeEngine):
    """DeepSparse compiles static shapes: one engine per sequence length, all compiled at load, each
    from its own copy of the graph (compiling rewrites the file's input shapes in place)."""

    files = ("model.onnx",)
    modules = ("deepsparse",)

    def __init__(self, variant: bench.Variant, settings: bench.Settings):
        from deepsparse import Engine

        graph = onnx.load(str(variant.path / "model.onnx"), load_external_data=False).graph
        self.input_names = [i.name for i in graph.input]
        batch, lengths = settings.batch_size, {*settings.sequence_lengths, settings.throughput_length}
        shapes = variant.path / "shapes"
        shapes.mkdir(exist_ok=True)
        self.engines = {}
        for n in sorted(lengths):
            copy_path = shutil.copyfile(variant.path / "model.onnx", shapes / f"seq-{n}.onnx")
            self.engines[n] = Engine(model=str(copy_path), batch_size=batch, num_cores=settings.cores,
                                     input_shapes=[[batch, n]] * len(self.input_names))
        self.precision = "int8" if "int8" in variant.name else "f32"

    def runner(self, inputs: dict[str, np.ndarray]) -> Any:
        arrays = [inputs[name] for name in self.input_names]
        engine = self.engines[arrays[0].shape[1]]
        return lambda: engine.run(arrays)

    def describe(self) -> dict[str, Any]:
        """The share of graph operations DeepSparse runs itself (the rest falls back to its ONNX Runtime)."""
        shares = {str(n): float(e.fraction_of_supported_ops) for n, e in self.engines.items()}
        shown = ", ".join(f"{share:.1%} at {n} tokens" for n, share in shares.items())
        return {"fraction_of_supported_ops": shares,
                "note": f"DeepSparse runs {shown} of the graph's operations itself (the rest in its fallback)."}


def logits(session: Any, reference: dict[str, np.ndarray]) -> np.ndarray:
    """An ONNX Runtime session's logits on the reference inputs, one text at a time."""
    return np.concatenate([session.run(None, row)[0] for row in _rows(reference)])


def _rows(reference: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    return [{"input_ids": reference["input_ids"][i:i + 1], "attention_mask": reference["attention_mask"][i:i + 1]}
            for i in range(len(reference["input_ids"]))]


def _session(model: Path | onnx.ModelProto) -> Any:
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def check_fp32(path: Path, reference: dict[str, np.ndarray], what: str) -> float:
    """ONNX Runtime on ``path`` against torch's logits; raises past :data:`FP32_TOLERANCE`."""
    difference = float(np.abs(logits(_session(path), reference) - reference["logits"]).max())
    if not difference <= FP32_TOLERANCE:
        raise SystemExit(f"{what}: ONNX Runtime FP32 differs from torch by {difference:.3g} (max |logit|, "
                         f"tolerance {FP32_TOLERANCE}); the graph computes something else, nothing was timed")
    log.info("%s: ONNX Runtime FP32 matches torch (max |logit difference| %.2g)", what, difference)
    return difference


def calibration_ranges(model: onnx.ModelProto, vocab_size: int, length: int) -> dict[str, tuple[float, float]]:
    """Activation ranges of every weighted MatMul, observed by ONNX Runtime over random-token inputs
    like the ones the benchmark times (the reference texts are kept for the agreement check)."""
    names = peer_graphs.activation_names(model)
    observed = copy.deepcopy(model)
    observed.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = _session(observed)
    runs = []
    for seed in range(CALIBRATION_RUNS):
        inputs = bench.dummy_inputs(("input_ids", "attention_mask"), 1, length, vocab_size, seed=seed + 1)
        runs.append(dict(zip(names, session.run(names, inputs), strict=True)))
    return peer_graphs.ranges(runs)


def build_graphs(onnx_dir: Path, work: Path, reference: dict[str, np.ndarray], vocab_size: int
                 ) -> tuple[dict[str, Path], dict[str, Any]]:
    """The FP32, INT8 and densified INT8 peer graphs under ``work/graphs/``, with what each step did."""
    checks: dict[str, Any] = {"export_vs_torch": check_fp32(onnx_dir / "model.onnx", reference, "the export")}
    fp32, checks["fp32_rewrites"] = peer_graphs.peer_fp32(onnx.load(str(onnx_dir / "model.onnx")))
    int8, checks["int8"] = peer_graphs.quantize(fp32, calibration_ranges(fp32, vocab_size,
                                                                         reference["input_ids"].shape[1]))
    densified, checks["int8_densified"] = peer_graphs.densify(int8)
    paths = {}
    for name, model in (("fp32", fp32), ("int8", int8), ("int8_densified", densified)):
        paths[name] = work / "graphs" / name / "model.onnx"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(paths[name]))
    checks["fp32_vs_torch"] = check_fp32(paths["fp32"], reference, "the peer FP32 graph")
    log.info("INT8 graph: %d MatMuls, weight sparsity %.2f%%; densified control: %d weights filled",
             checks["int8"]["matmuls_quantized"], 100 * checks["int8"]["weight_sparsity"],
             checks["int8_densified"]["weights_filled"])
    return paths, checks


def variant_copies(graphs: dict[str, Path], onnx_dir: Path, work: Path) -> list[bench.Variant]:
    """Each peer variant on its own copy of its graph (and the config), so no engine sees another's file."""
    variants = []
    for name, (engine, graph) in GRAPHS.items():
        folder = work / "variants" / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copyfile(graphs[graph], folder / "model.onnx")
        shutil.copyfile(onnx_dir / "config.json", folder / "config.json")
        variants.append(bench.Variant(name, engine, folder))
    return variants


def agreement(reference: dict[str, np.ndarray], other_models: set[str]) -> Any:
    """The ``verify`` step of the benchmark: every loaded engine's logits on the reference inputs against
    torch's; FP32 engines within :data:`FP32_TOLERANCE`, INT8 within :data:`INT8_TOLERANCE` of the
    logits' range (the densified control's weights differ by design, so it is only reported; the
    ``other_models`` are not this model and are skipped)."""
    expected = reference["logits"]
    spread = float(expected.max() - expected.min())

    def verify(engines: dict[str, Any]) -> dict[str, Any]:
        found, failed = {}, []
        for name, engine in engines.items():
            if name in other_models:
                continue
            got = np.concatenate([np.asarray(engine.runner(row)()[0]) for row in _rows(reference)])
            difference = float(np.abs(got - expected).max())
            found[name] = {"max_abs_logit_difference": difference,
                           "argmax_agreement": float((got.argmax(-1) == expected.argmax(-1)).mean())}
            limit = None if name.endswith("densified") else (
                INT8_TOLERANCE * spread if "int8" in name else FP32_TOLERANCE)
            if limit is not None and not difference <= limit:
                failed.append(f"{name} differs from torch by {difference:.3g} (limit {limit:.3g})")
            log.info("%s vs torch FP32: max |logit difference| %.3g, argmax agreement %.0f%%", name, difference,
                     100 * found[name]["argmax_agreement"])
        if failed:
            raise SystemExit("outputs disagree, nothing was timed: " + "; ".join(failed))
        return {"texts": len(expected), "reference_logit_range": spread, "vs_torch_fp32": found}

    return verify


def extra_irs(items: list[str]) -> list[bench.Variant]:
    """``NAME=DIR`` OpenVINO INT8 IR directories, measured dense like ``openvino_int8`` (their outputs are
    not compared with the reference: they are other models, e.g. of the same shape with heads removed)."""
    variants = []
    for item in items:
        name, _, folder = item.partition("=")
        if not name or not (Path(folder) / "openvino_model.xml").is_file():
            raise SystemExit(f"--ir {item!r}: give NAME=DIR, DIR holding openvino_model.xml")
        variant = bench.Variant(f"openvino_int8_{name}", "openvino", Path(folder), properties={SPARSE_RATE: "1.0"})
        bench.LABELS[variant.name] = f"OpenVINO INT8, {name}"
        variants.append(variant)
    return variants


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_dir", type=Path)
    parser.add_argument("ir_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--work", type=Path, help="where the peer graphs and copies go (default: beside OUT)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seq-len", type=int, nargs="+", default=[32, 128, 384])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--ir", nargs="+", default=[], metavar="NAME=DIR",
                        help="more OpenVINO INT8 IR directories to measure beside the peers (e.g. slimmed models)")
    args = parser.parse_args()
    show_logs()
    work = args.work or args.out.parent / "peers"
    reference = dict(np.load(args.onnx_dir / "reference.npz"))
    vocab = int(json.loads((args.onnx_dir / "config.json").read_text()).get("vocab_size", 30522))

    # In a process of its own: the graphs' hundreds of MB, once freed, would stay in this process's heap
    # and hide what the engines loaded next add to its peak memory.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=show_logs) as builder:
        graphs, checks = builder.submit(build_graphs, args.onnx_dir, work, reference, vocab).result()
    sources = {p: digest(p) for p in (args.onnx_dir / "model.onnx", *graphs.values())}
    bench.ENGINES.update(onnxruntime=OnnxRuntimeEngine, deepsparse=DeepSparseEngine)
    bench.LABELS.update(LABELS)
    others = extra_irs(args.ir)
    variants = [*variant_copies(graphs, args.onnx_dir, work),
                *bench.ir_variants(args.ir_dir, tasks.task_of(args.ir_dir)), *others]
    settings = bench.Settings(sequence_lengths=tuple(args.seq_len), duration_s=args.duration, threads=args.threads)
    result = bench.benchmark(variants, settings, verify=agreement(reference, {v.name for v in others}))
    changed = [str(path) for path, before in sources.items() if digest(path) != before]
    if changed:
        raise SystemExit(f"an engine rewrote a source graph: {changed}")
    result["checks"] = {**checks, **result["checks"],
                        "sources_unchanged": [f"{p.parent.name}/{p.name}" for p in sources]}
    result["versions"].update({name: metadata.version(name) for name in ("onnxruntime", "deepsparse", "onnx")})
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
