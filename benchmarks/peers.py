"""Peer engines beside OpenVINO INT8, in one process: ONNX Runtime FP32 and DeepSparse 1.8 (sparse
FP32) on the same ONNX model, with pofa-openvino's own measurement (interleaved latency rounds, memory
windows, ratios against OpenVINO INT8 dense).

Runs in the throwaway peers venv (``make peers``: DeepSparse pins an old onnx, so it cannot share the
toolkit's venv), which has the runtime-only install of pofa-openvino:

    benchmarks/.venv-peers/bin/python benchmarks/peers.py ONNX_DIR IR_DIR OUT.json [--duration 10]

``ONNX_DIR`` holds ``model.onnx`` (IR version <= 9, default opset domain only) and ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pofa_openvino import bench


class OnnxRuntimeEngine:
    files = ("*.onnx",)
    modules = ("onnxruntime",)

    def __init__(self, variant: bench.Variant, settings: bench.Settings):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = settings.cores, 1
        self.session = ort.InferenceSession(str(variant.path / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.precision = "f32"

    def runner(self, inputs: dict[str, np.ndarray]) -> Any:
        return lambda: self.session.run(None, inputs)

    def throughput(self, inputs: dict[str, np.ndarray], duration_s: float, batch_size: int) -> dict[str, Any]:
        return bench.sequential_throughput(self.runner(inputs), duration_s, batch_size)

    def describe(self) -> None:
        return None


class DeepSparseEngine(OnnxRuntimeEngine):
    """DeepSparse compiles static shapes: one engine per sequence length, all compiled at load."""

    modules = ("deepsparse",)

    def __init__(self, variant: bench.Variant, settings: bench.Settings):
        import onnx
        from deepsparse import Engine

        graph = onnx.load(str(variant.path / "model.onnx"), load_external_data=False).graph
        self.input_names = [i.name for i in graph.input]
        batch, lengths = settings.batch_size, {*settings.sequence_lengths, settings.throughput_length}
        self.engines = {n: Engine(model=str(variant.path / "model.onnx"), batch_size=batch, num_cores=settings.cores,
                                  input_shapes=[[batch, n]] * len(self.input_names))
                        for n in sorted(lengths)}
        self.precision = "f32 (sparse kernels)"

    def runner(self, inputs: dict[str, np.ndarray]) -> Any:
        arrays = [inputs[name] for name in self.input_names]
        engine = self.engines[arrays[0].shape[1]]
        return lambda: engine.run(arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_dir", type=Path)
    parser.add_argument("ir_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seq-len", type=int, nargs="+", default=[32, 128, 384])
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    bench.ENGINES.update(onnxruntime=OnnxRuntimeEngine, deepsparse=DeepSparseEngine)
    bench.LABELS.update(onnxruntime_fp32="ONNX Runtime FP32", deepsparse_fp32="DeepSparse (sparse FP32)")
    variants = [bench.Variant("onnxruntime_fp32", "onnxruntime", args.onnx_dir),
                bench.Variant("deepsparse_fp32", "deepsparse", args.onnx_dir),
                *bench.ir_variants(args.ir_dir, bench.task_of(args.ir_dir))]
    settings = bench.Settings(sequence_lengths=tuple(args.seq_len), duration_s=args.duration, threads=args.threads)
    result = bench.benchmark(variants, settings)
    result["versions"].update({name: metadata.version(name) for name in ("onnxruntime", "deepsparse", "onnx")})
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
