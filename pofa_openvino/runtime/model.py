"""Run an exported OpenVINO IR directory on the CPU with its runtime config, and say what the CPU
really executed. Imports only openvino and numpy (no torch, no transformers): the edge bundle uses it.

OpenVINO's sparse weight decompression acts only on FullyConnected layers with constant INT8 weights
whose dims are multiples of 64 and whose zero fraction reaches the rate, and only on CPUs with AMX;
elsewhere the same model silently runs dense kernels. :meth:`SparseModel.describe` therefore reads the
executed kernel type of every FullyConnected layer from a profiled inference instead of trusting the
property it set."""

from __future__ import annotations

import json
import logging
import math
import platform
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

IR_FILE = "openvino_model.xml"
RUNTIME_CONFIG = "runtime_config.json"
SPARSE_RATE = "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"
AMX = frozenset({"amx_tile", "amx_int8"})  # what the sparse INT8 kernels need
MIN_SPARSE_RATE = 0.5  # OpenVINO documents rates above 0.5; below it nothing shows a sparse kernel runs
_WEIGHT_PATH_OPS = {"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze"}
_SOURCE = re.compile(r"^__module\.(.+?)/aten::linear/")


@dataclass(frozen=True)
class Int8Weight:
    """An INT8 weight constant feeding a MatMul, oriented [out, in] like the torch Linear it came from."""

    node: str  # the MatMul's name in the IR
    source: str | None  # the torch module it was exported from (``bert.encoder.layer.0...``), when known
    values: np.ndarray

    @property
    def zero_fraction(self) -> float:
        return float((self.values == 0).mean())

    @property
    def shape_eligible(self) -> bool:
        """Both dims multiples of 64: the shapes the sparse kernel takes."""
        return all(dim % 64 == 0 for dim in self.values.shape)


def int8_weights(model: Any) -> list[Int8Weight]:
    """Every MatMul whose weight input is (a dequantized) constant i8 tensor."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() in _WEIGHT_PATH_OPS and node.get_input_size() > 0:
            node = node.input_value(0).get_node()
        if node.get_type_name() != "Constant" or node.get_element_type().get_type_name() != "i8":
            continue
        values = node.get_data()
        if values.ndim != 2:
            continue
        if not op.get_attributes().get("transpose_b", False):
            values = values.T
        source = _SOURCE.match(op.get_friendly_name())
        found.append(Int8Weight(op.get_friendly_name(), source.group(1) if source else None, values))
    return found


def auto_rate(fractions: list[float]) -> float | None:
    """The largest rate at which every given layer (the pruned, shape-eligible INT8 ones) still
    qualifies: their lowest zero fraction rounded down to 0.05; None below 0.5 or with no layer."""
    if not fractions:
        return None
    rate = math.floor(min(fractions) * 20 + 1e-9) / 20
    return rate if rate >= MIN_SPARSE_RATE else None


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU model name and its instruction-set flags (``/proc/cpuinfo``; the platform name elsewhere)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = frozenset(value.split())
    return model, flags


def cpu() -> dict[str, Any]:
    """The CPU model and whether it has AMX (what the sparse INT8 kernels need)."""
    model, flags = cpu_info()
    return {"cpu": model, "amx": AMX <= flags}


def kernel_summary(profiling: list[tuple[str, str]]) -> dict[str, Any]:
    """From (node type, exec type) pairs of a profiled inference: FullyConnected kernel types and how
    many of them are sparse. (INT8 layers may report as ``FullyConnectedQuantizedLegacy``.)"""
    kernels = Counter(exec_type for node_type, exec_type in profiling if node_type.startswith("FullyConnected"))
    return {"kernel_types": dict(sorted(kernels.items())),
            "sparse_layers_active": sum(n for kind, n in kernels.items() if "sparse" in kind)}


def explain(amx: bool, rate: float | None, eligible: int, active: int, cpu_name: str) -> str:
    """One plain sentence on whether sparse weight decompression ran, and why not when it did not."""
    if active:
        return f"sparse weight decompression active: {active} FullyConnected layers ran sparse INT8 kernels"
    if rate is None:
        return "sparse weight decompression is off (no rate below 1.0 is set): every layer runs dense"
    if not amx:
        return (f"sparse weight decompression inactive: this CPU ({cpu_name}) has no AMX, so OpenVINO runs "
                f"dense INT8 kernels; it needs a 4th-generation Xeon or newer")
    if not eligible:
        return (f"sparse weight decompression inactive: no INT8 layer has both dims multiples of 64 and "
                f"a zero fraction of at least {rate}")
    return f"sparse weight decompression inactive: {eligible} layers qualify at rate {rate}, none ran sparse"


def read_runtime_config(model_dir: Path) -> dict[str, dict[str, str]]:
    path = Path(model_dir) / RUNTIME_CONFIG
    return json.loads(path.read_text()) if path.is_file() else {}


def write_runtime_config(model_dir: Path, rate: float | None) -> dict[str, dict[str, str]]:
    """``runtime_config.json`` in the shape ``benchmark_app -load_config`` reads (values as strings)."""
    config = {"CPU": {SPARSE_RATE: str(rate if rate is not None else 1.0)}}
    (Path(model_dir) / RUNTIME_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return config


class SparseModel:
    """An IR directory compiled for the CPU with the properties of its ``runtime_config.json``."""

    def __init__(self, model_dir: str | Path, properties: dict[str, Any] | None = None):
        import openvino as ov

        self.dir = Path(model_dir)
        self.core = ov.Core()
        self.model = self.core.read_model(self.dir / IR_FILE)
        self.properties = {**read_runtime_config(self.dir).get("CPU", {}), **(properties or {})}
        self.compiled = self.core.compile_model(self.model, "CPU", self.properties)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.model.inputs]

    @property
    def sparse_rate(self) -> float | None:
        rate = float(self.properties.get(SPARSE_RATE, 1.0))
        return rate if rate < 1.0 else None

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name (``logits``; ``start_logits`` and ``end_logits``) for a batch of inputs."""
        result = self.request.infer({k: v for k, v in inputs.items() if k in self.input_names})
        return {output.get_any_name(): value for output, value in result.items()}

    def describe(self, sequence_length: int = 32) -> dict[str, Any]:
        """CPU, AMX, rate, eligible layers, and the kernels one profiled inference executed."""
        profiled = self.core.compile_model(self.model, "CPU", {**self.properties, "PERF_COUNT": True})
        request = profiled.create_infer_request()
        request.infer(self.dummy_inputs(sequence_length))
        kernels = kernel_summary([(p.node_type, p.exec_type) for p in request.get_profiling_info()
                                  if p.status == p.Status.EXECUTED])
        rate, machine = self.sparse_rate, cpu()
        weights = int8_weights(self.model)
        eligible = sum(w.shape_eligible and rate is not None and w.zero_fraction >= rate for w in weights)
        note = explain(machine["amx"], rate, eligible, kernels["sparse_layers_active"], machine["cpu"])
        return {**machine, "sparse_rate": rate, "sparse_layers_eligible": eligible, **kernels, "note": note}

    def dummy_inputs(self, sequence_length: int) -> dict[str, np.ndarray]:
        shape = (1, sequence_length)
        return {name: np.zeros(shape, np.int64) if name == "token_type_ids" else np.ones(shape, np.int64)
                for name in self.input_names}

