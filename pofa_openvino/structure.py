"""Structured sparsity's model side: where each architecture keeps its attention heads and FFN neurons,
physically removing the ones pruning zeroed, and rebuilding such a slimmed model from its checkpoint.

A head or neuron whose columns in the layer's output projection (``attention.output.dense`` /
``out_lin`` for heads, ``output.dense`` / ``lin2`` for neurons) are all zero contributes nothing, so
removing it and the matching rows of the layers feeding it leaves the logits unchanged. A standard
config cannot say "layer 3 keeps 7 heads and 960 neurons": the per-layer shapes go into the
checkpoint's ``config.json`` as ``pofa_structure`` and :func:`rebuild` re-applies them on load.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

STRUCTURE_KEY = "pofa_structure"
STRUCTURE_FORMAT = 1


@dataclass(frozen=True)
class Layout:
    """Module names inside one transformer layer of an architecture, and its head-count attribute."""

    layer: str  # regular expression of a layer's module name
    attention: str  # the module holding the head count
    heads_attribute: str
    qkv: tuple[str, str, str]
    attention_output: str
    ffn_input: str
    ffn_output: str

    def ffn_output_names(self) -> str:
        """INC ``op_names`` entry for every layer's second FFN Linear (the neurons' input columns)."""
        return self.layer.removesuffix("$") + r"\." + re.escape(self.ffn_output) + "$"


LAYOUTS = {
    "bert": Layout(layer=r"encoder\.layer\.\d+$", attention="attention.self", heads_attribute="num_attention_heads",
                   qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
                   attention_output="attention.output.dense", ffn_input="intermediate.dense",
                   ffn_output="output.dense"),
    "distilbert": Layout(layer=r"transformer\.layer\.\d+$", attention="attention", heads_attribute="n_heads",
                         qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
                         attention_output="attention.out_lin", ffn_input="ffn.lin1", ffn_output="ffn.lin2"),
}


def layout_of(model_type: str) -> Layout | None:
    return LAYOUTS.get(model_type)


def layers(model: Any) -> list[tuple[str, Any]]:
    """The model's transformer layers, in order, as (module name, module)."""
    layout = _layout(model)
    pattern = re.compile(layout.layer)
    return [(name, module) for name, module in model.named_modules() if pattern.search(name)]


@dataclass
class AttentionHeads:
    """What INC's ``mha`` pruner reads from an attention module (``MHACompression``'s attribute names),
    for architectures that name them differently (DistilBERT: ``n_heads``)."""

    num_attention_heads: int
    attention_head_size: int
    all_head_size: int


def attention_modules(model: Any, included: Any) -> list[dict[str, Any]]:
    """INC's ``mha_modules`` (the structure its pattern searcher would build by tracing, which fails on
    transformers 5), named from the architecture; ``included`` filters attention module names."""
    layout = _layout(model)
    modules = dict(model.named_modules())
    found = []
    for name, _ in layers(model):
        attention = f"{name}.{layout.attention}"
        if not included(attention):
            continue
        heads = _heads(modules[attention], layout)
        head_size = modules[f"{name}.{layout.qkv[0]}"].out_features // heads
        qkv = [f"{name}.{q}" for q in layout.qkv]
        output = f"{name}.{layout.attention_output}"
        found.append({"qkv_name": qkv, "ffn_name": [output], "mha_name": [attention],
                      "qkv_module": [modules[q] for q in qkv], "ffn_module": [modules[output]],
                      "mha_module": [AttentionHeads(heads, head_size, heads * head_size)]})
    return found


def slim(model: Any, multiple: int) -> dict[str, Any]:
    """Remove every head and FFN neuron whose output-projection columns are all zero, in place; the
    neurons kept per layer are rounded up to ``multiple`` (with zero columns, which change nothing) so
    the INT8 kernels see aligned widths. Records and returns the new per-layer shapes."""
    layout = _layout(model)
    structure = []
    for _name, layer in layers(model):
        attention = layer.get_submodule(layout.attention)
        heads = _heads(attention, layout)
        output = layer.get_submodule(layout.attention_output)
        head_size = output.in_features // heads
        alive = (output.weight != 0).any(dim=0).reshape(heads, head_size).any(dim=1)
        kept_heads = [h for h in range(heads) if alive[h]] or [0]  # a layer keeps one head: exact, since it is zero
        columns = [h * head_size + i for h in kept_heads for i in range(head_size)]
        for name in layout.qkv:
            _keep(layer, name, columns, dim=0)
        _keep(layer, layout.attention_output, columns, dim=1)
        _set_heads(attention, layout, len(kept_heads), head_size)

        ffn_output = layer.get_submodule(layout.ffn_output)
        width = ffn_output.in_features
        alive = (ffn_output.weight != 0).any(dim=0)
        neurons = [i for i in range(width) if alive[i]]
        target = min(width, max(multiple, math.ceil(len(neurons) / multiple) * multiple))
        padding = [i for i in range(width) if not alive[i]][: target - len(neurons)]
        neurons = sorted(neurons + padding)
        _keep(layer, layout.ffn_input, neurons, dim=0)
        _keep(layer, layout.ffn_output, neurons, dim=1)
        structure.append({"heads": len(kept_heads), "kept_heads": kept_heads, "head_size": head_size,
                          "intermediate_size": len(neurons), "neurons_alive": int(alive.sum())})
    record = {"format": STRUCTURE_FORMAT, "layers": structure}
    setattr(model.config, STRUCTURE_KEY, record)
    return record


def rebuild(model: Any, record: dict[str, Any]) -> None:
    """Give a freshly built (full-size) model the per-layer shapes of a slimmed checkpoint, so its state
    dict loads; the weights are then the checkpoint's."""
    if record.get("format") != STRUCTURE_FORMAT:
        raise ValueError(f"{STRUCTURE_KEY} format {record.get('format')!r} is not {STRUCTURE_FORMAT}")
    layout = _layout(model)
    found = layers(model)
    if len(found) != len(record["layers"]):
        raise ValueError(f"{STRUCTURE_KEY} records {len(record['layers'])} layers, the model has {len(found)}")
    for (_name, layer), shape in zip(found, record["layers"], strict=True):
        columns = list(range(shape["heads"] * shape["head_size"]))
        for name in layout.qkv:
            _keep(layer, name, columns, dim=0)
        _keep(layer, layout.attention_output, columns, dim=1)
        _set_heads(layer.get_submodule(layout.attention), layout, shape["heads"], shape["head_size"])
        neurons = list(range(shape["intermediate_size"]))
        _keep(layer, layout.ffn_input, neurons, dim=0)
        _keep(layer, layout.ffn_output, neurons, dim=1)


def resized_linears(model: Any) -> list[tuple[str, Any]]:
    """(full name, Linear) of every layer :func:`slim` and :func:`rebuild` resize."""
    layout = _layout(model)
    names = (*layout.qkv, layout.attention_output, layout.ffn_input, layout.ffn_output)
    return [(f"{name}.{part}", layer.get_submodule(part)) for name, layer in layers(model) for part in names]


def linear_flops(model: Any, sequence_length: int) -> int:
    """Multiply-accumulates x2 of one sequence through the encoder: every Linear plus the attention
    score and context products (the embeddings and softmax are negligible)."""
    import torch

    layout = layout_of(model.config.model_type)
    total = sum(2 * sequence_length * m.in_features * m.out_features
                for m in model.modules() if isinstance(m, torch.nn.Linear))
    if layout is not None:
        for _name, layer in layers(model):
            width = layer.get_submodule(layout.qkv[0]).out_features
            total += 2 * 2 * sequence_length * sequence_length * width
    return total


def require_layout(model_type: str | None) -> Layout:
    layout = layout_of(model_type or "")
    if layout is None:
        raise ValueError(f"heads and FFN neurons can be removed from {', '.join(LAYOUTS)} models, not {model_type}")
    return layout


def _layout(model: Any) -> Layout:
    return require_layout(model.config.model_type)


def _heads(attention: Any, layout: Layout) -> int:
    return int(getattr(attention, layout.heads_attribute))


def _set_heads(attention: Any, layout: Layout, heads: int, head_size: int) -> None:
    setattr(attention, layout.heads_attribute, heads)
    if hasattr(attention, "all_head_size"):
        attention.all_head_size = heads * head_size


def _keep(layer: Any, name: str, indices: list[int], dim: int) -> None:
    """Replace the Linear ``name`` of ``layer`` by one holding only ``indices`` of its outputs (dim 0) or
    inputs (dim 1)."""
    import torch

    old = layer.get_submodule(name)
    index = torch.tensor(indices, dtype=torch.long, device=old.weight.device)
    weight = old.weight.detach().index_select(dim, index)
    bias = old.bias.detach() if old.bias is not None else None
    if bias is not None and dim == 0:
        bias = bias.index_select(0, index)
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                          device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    parent, _, child = name.rpartition(".")
    setattr(layer.get_submodule(parent) if parent else layer, child, new)
