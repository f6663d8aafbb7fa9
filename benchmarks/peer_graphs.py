"""ONNX graph forms for the peer engines, built from the toolkit's FP32 export (onnx and numpy only, so
it runs in the peers venv beside DeepSparse's old onnx).

DeepSparse is fast only on the graph forms its pattern matcher knows, measured on this machine:
- opset-17 ``LayerNormalization`` and the dynamo exporter's GELU operand order send it into slow
  fallback subgraphs, so :func:`peer_fp32` spells both the way the TorchScript exporter did;
- its sparse INT8 kernels need the form SparseML's exporter writes for a quantized Linear
  (``QuantizeLinear`` -> ``MatMulInteger`` with uint8 weights around zero point 128 -> int32 bias ``Add``
  -> ``Cast`` -> per-channel ``Mul``); ONNX Runtime's ``quantize_static`` forms (QDQ, QOperator) fall back.
  :func:`quantize` writes that form from activation ranges that ONNX Runtime measured (:func:`ranges`).
:func:`densify` fills the zeros of the same graph: the control that shows whether sparsity was used.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHT_ZERO_POINT = 128  # SparseML's uint8 form of a symmetric int8 weight: a pruned weight is exactly 128


class Graph:
    """A copy of an ONNX model (the caller's stays as it was), with its initializers by name and new
    unique names for the nodes it gains."""

    def __init__(self, model: onnx.ModelProto):
        self.model = copy.deepcopy(model)
        self.graph = self.model.graph
        self.initializers = {t.name: t for t in self.graph.initializer}
        self._count = 0

    def constant(self, name: str) -> np.ndarray | None:
        tensor = self.initializers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def add_constant(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        tensor = numpy_helper.from_array(value, name)
        self.graph.initializer.append(tensor)
        self.initializers[name] = tensor
        return name

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"pofa_{hint}_{self._count}"

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        found: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                found.setdefault(name, []).append(node)
        return found

    def replace(self, rewrite: Callable[[onnx.NodeProto], list[onnx.NodeProto] | None]) -> int:
        """Rebuild the node list, each node replaced by what ``rewrite`` returns (None keeps it); the
        order stays topological because a node's replacement takes its place."""
        nodes, changed = [], 0
        for node in list(self.graph.node):
            new = rewrite(node)
            nodes.extend([node] if new is None else new)
            changed += new is not None
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        return changed


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def decompose_layer_norm(graph: Graph) -> int:
    """Opset-17 ``LayerNormalization`` over the last axis as the basic ops the TorchScript exporter wrote."""

    def rewrite(node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if node.op_type != "LayerNormalization":
            return None
        if _attribute(node, "axis", -1) != -1 or len(node.output) != 1:
            raise ValueError(f"LayerNormalization {node.name!r}: only axis -1 with one output is decomposed")
        x, scale, bias = node.input
        names = {step: graph.fresh(f"ln_{step}") for step in ("mean", "centred", "square", "var", "shifted", "std",
                                                             "normed", "scaled")}
        two = graph.add_constant("two", np.array(2.0, np.float32))
        eps = graph.add_constant("eps", np.array(_attribute(node, "epsilon", 1e-5), np.float32))
        return [helper.make_node("ReduceMean", [x], [names["mean"]], axes=[-1], keepdims=1),
                helper.make_node("Sub", [x, names["mean"]], [names["centred"]]),
                helper.make_node("Pow", [names["centred"], two], [names["square"]]),
                helper.make_node("ReduceMean", [names["square"]], [names["var"]], axes=[-1], keepdims=1),
                helper.make_node("Add", [names["var"], eps], [names["shifted"]]),
                helper.make_node("Sqrt", [names["shifted"]], [names["std"]]),
                helper.make_node("Div", [names["centred"], names["std"]], [names["normed"]]),
                helper.make_node("Mul", [names["normed"], scale], [names["scaled"]]),
                helper.make_node("Add", [names["scaled"], bias], list(node.output))]

    return graph.replace(rewrite)


def canonical_gelu(graph: Graph) -> int:
    """The dynamo exporter writes exact GELU as ``x * (0.5 * (1 + erf(x / sqrt 2)))``; DeepSparse matches
    ``(x * (1 + erf(x / sqrt 2))) * 0.5``, the same arithmetic with the constant last."""
    consumers = graph.consumers()
    pairs: dict[str, tuple[str, str]] = {}  # outer Mul's output -> (x, 1 + erf)
    inner: set[str] = set()
    for erf in (n for n in graph.graph.node if n.op_type == "Erf"):
        plus = _only(consumers.get(erf.output[0], []), "Add")
        half = plus and _only(consumers.get(plus.output[0], []), "Mul")
        outer = half and _only(consumers.get(half.output[0], []), "Mul")
        if not (half and outer) or graph.constant(_other(half, plus.output[0])) is None:
            continue
        x = _other(outer, half.output[0])
        pairs[outer.output[0]] = (x, plus.output[0])
        inner.add(half.output[0])
    half_name = graph.add_constant("half", np.array(0.5, np.float32)) if pairs else ""

    def rewrite(node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if node.op_type == "Mul" and node.output[0] in inner:
            return []
        if node.op_type == "Mul" and node.output[0] in pairs:
            x, plus = pairs[node.output[0]]
            product = graph.fresh("gelu_product")
            return [helper.make_node("Mul", [x, plus], [product]),
                    helper.make_node("Mul", [product, half_name], list(node.output))]
        return None

    graph.replace(rewrite)
    return len(pairs)


def _only(nodes: list[onnx.NodeProto], op_type: str) -> onnx.NodeProto | None:
    return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op_type else None


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def peer_fp32(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The FP32 graph every peer runs: the export with LayerNorm and GELU in DeepSparse's forms."""
    graph = Graph(model)
    done = {"layer_norms_decomposed": decompose_layer_norm(graph), "gelus_reordered": canonical_gelu(graph)}
    _drop_unused(graph)
    onnx.checker.check_model(graph.model)
    return graph.model, done


def weighted_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMuls of a Linear: a constant 2-D weight as second input (attention's MatMuls have none)."""
    weights = {t.name for t in model.graph.initializer if len(t.dims) == 2}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def activation_names(model: onnx.ModelProto) -> list[str]:
    """What :func:`ranges` must observe: the activation input of each weighted MatMul."""
    return sorted({n.input[0] for n in weighted_matmuls(model)})


def ranges(outputs: Iterable[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """Min and max of each observed activation over the calibration runs' outputs."""
    found: dict[str, tuple[float, float]] = {}
    for run in outputs:
        for name, value in run.items():
            low, high = float(value.min()), float(value.max())
            old = found.get(name, (low, high))
            found[name] = (min(old[0], low), max(old[1], high))
    return found


def quantize(model: onnx.ModelProto, activation_ranges: dict[str, tuple[float, float]]
             ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Every weighted MatMul (and the bias Add after it) in SparseML's INT8 form: uint8 activations with
    an asymmetric per-tensor scale from ``activation_ranges``, symmetric per-output-channel int8 weights
    stored as uint8 around :data:`WEIGHT_ZERO_POINT`, an int32 bias. Zeros stay exactly zero."""
    graph = Graph(model)
    consumers = graph.consumers()
    plans: dict[str, dict[str, Any]] = {}
    zeros = total = 0
    for matmul in weighted_matmuls(graph.model):
        after = consumers.get(matmul.output[0], [])
        bias_add = after[0] if len(after) == 1 and after[0].op_type == "Add" else None
        bias = bias_add and graph.constant(_other(bias_add, matmul.output[0]))
        if bias is not None and bias.shape[-1:] != graph.constant(matmul.input[1]).shape[1:]:
            bias = None
        plans[matmul.output[0]] = {"node": matmul, "bias_add": bias_add if bias is not None else None, "bias": bias}
    skipped = {p["bias_add"].output[0]: key for key, p in plans.items() if p["bias_add"] is not None}

    def rewrite(node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        nonlocal zeros, total
        if node.output[0] in skipped:
            return []
        plan = plans.get(node.output[0])
        if plan is None:
            return None
        weight = graph.constant(node.input[1]).astype(np.float32)
        low, high = activation_ranges[node.input[0]]
        low, high = min(low, 0.0), max(high, 0.0)
        x_scale = np.float32(max(high - low, 1e-8) / 255.0)
        x_zero = np.uint8(np.clip(round(-low / x_scale), 0, 255))
        w_scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0).astype(np.float32)
        q_weight = (np.clip(np.round(weight / w_scale), -127, 127) + WEIGHT_ZERO_POINT).astype(np.uint8)
        zeros += int((weight == 0).sum())
        total += weight.size
        scale = (x_scale * w_scale).astype(np.float32)
        out = plan["bias_add"].output[0] if plan["bias_add"] is not None else node.output[0]
        names = {step: graph.fresh(f"q_{step}") for step in ("x", "acc", "biased", "float")}
        x_zero_name = graph.add_constant("x_zero", x_zero)
        w_zero = np.full(weight.shape[1], WEIGHT_ZERO_POINT, np.uint8)
        x_scale_name = graph.add_constant("x_scale", x_scale)
        nodes = [helper.make_node("QuantizeLinear", [node.input[0], x_scale_name, x_zero_name], [names["x"]]),
                 helper.make_node("MatMulInteger", [names["x"], graph.add_constant("w", q_weight), x_zero_name,
                                                    graph.add_constant("w_zero", w_zero)], [names["acc"]])]
        accumulated = names["acc"]
        if plan["bias"] is not None:
            q_bias = np.round(plan["bias"].astype(np.float64) / scale).astype(np.int32)
            nodes.append(helper.make_node("Add", [accumulated, graph.add_constant("bias", q_bias)], [names["biased"]]))
            accumulated = names["biased"]
        nodes += [helper.make_node("Cast", [accumulated], [names["float"]], to=onnx.TensorProto.FLOAT),
                  helper.make_node("Mul", [names["float"], graph.add_constant("scale", scale)], [out])]
        return nodes

    graph.replace(rewrite)
    _drop_unused(graph)
    onnx.checker.check_model(graph.model)
    return graph.model, {"matmuls_quantized": len(plans), "weight_zeros": zeros, "weights": total,
                         "weight_sparsity": zeros / max(total, 1)}


def densify(model: onnx.ModelProto, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The same graph with every pruned weight of a ``MatMulInteger`` set to one quantization step (random
    sign): identical work for dense kernels, no zeros for sparse ones."""
    graph = Graph(model)
    rng = np.random.default_rng(seed)
    filled = 0
    for node in (n for n in graph.graph.node if n.op_type == "MatMulInteger"):
        tensor = graph.initializers[node.input[1]]
        weight = numpy_helper.to_array(tensor).copy()
        pruned = weight == WEIGHT_ZERO_POINT
        weight[pruned] = np.where(rng.random(int(pruned.sum())) < 0.5, WEIGHT_ZERO_POINT - 1, WEIGHT_ZERO_POINT + 1)
        filled += int(pruned.sum())
        tensor.CopyFrom(numpy_helper.from_array(weight, tensor.name))
    return graph.model, {"weights_filled": filled}


def _drop_unused(graph: Graph) -> None:
    used = {name for node in graph.graph.node for name in node.input}
    keep = [t for t in graph.graph.initializer if t.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(keep)
