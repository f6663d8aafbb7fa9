"""The one bridge to Intel Neural Compressor pruning, plus sparsity measured from the tensors."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def prunable_matcher(section: Any) -> Callable[[str], bool]:
    """Which layer names the ``pruning`` section targets, matched as INC does: regular-expression
    searches of ``op_names`` (all when empty) minus ``excluded_op_names``."""
    included = [re.compile(p) for p in section.op_names or [".*"]]
    excluded = [re.compile(p) for p in section.excluded_op_names]
    return lambda name: any(p.search(name) for p in included) and not any(p.search(name) for p in excluded)


def linear_weights(model: Any) -> dict[str, Any]:
    """Every ``torch.nn.Linear`` weight by module name."""
    import torch

    return {name: module.weight for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def sparsity_report(model: Any, prunable: Callable[[str], bool]) -> dict[str, Any]:
    """Per-layer zero fraction of every Linear weight; ``overall`` over the prunable layers."""
    layers, zeros, total = [], 0, 0
    for name, weight in linear_weights(model).items():
        count = int((weight == 0).sum())
        pruned = prunable(name)
        layers.append({"name": name, "shape": list(weight.shape), "zero_fraction": round(count / weight.numel(), 6),
                       "prunable": pruned})
        if pruned:
            zeros, total = zeros + count, total + weight.numel()
    return {"layers": layers, "overall": round(zeros / total, 6) if total else 0.0}


def _import_inc(module: str) -> Any:
    """Import an INC module without its pkg_resources deprecation notice (INC 3.7.1 is pinned)."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        return importlib.import_module(module)


def inc_config(section: Any) -> Any:
    """Build INC's ``WeightPruningConfig`` from the recipe's ``pruning`` section (same vocabulary).

    ``unstructured`` is INC's ``1x1`` pattern. ``pattern_lock`` always locks element-wise (``1x1``):
    INC's block patterns lock whole blocks that hold any non-zero, which would revive the zeros inside
    them; an element mask keeps every zero, and with it any block structure the checkpoint has."""
    WeightPruningConfig = _import_inc("neural_compressor.config").WeightPruningConfig  # noqa: N806

    def inc_values(values: dict[str, Any], inherited_type: str) -> dict[str, Any]:
        if values.get("pattern") == "unstructured" or values.get("pruning_type", inherited_type) == "pattern_lock":
            values["pattern"] = "1x1"
        return values

    settings = inc_values(section.model_dump(exclude={"pruning_configs"}), section.pruning_type)
    groups = [inc_values(group.model_dump(exclude_none=True), section.pruning_type)
              for group in section.pruning_configs] or [{}]
    return WeightPruningConfig(pruning_configs=groups, **settings)


def section_from_inc(config: Any) -> Any:
    """The recipe's ``pruning`` section for an INC ``WeightPruningConfig`` built in Python, so a run
    records (and fingerprints) exactly what it pruned with. INC's empty ``excluded_op_names`` default
    becomes ours: the task head stays dense unless the config names it in ``op_names``."""
    from .recipe import PruningSection

    settings = dict(config.weight_compression)
    if settings.pop("low_memory_usage", False):
        raise ValueError("WeightPruningConfig(low_memory_usage=True) is not supported; leave it False")
    if not settings.get("excluded_op_names"):
        settings.pop("excluded_op_names", None)
    settings["pruning_op_types"] = [t for t in settings.get("pruning_op_types", ["Linear"]) if t == "Linear"]
    return PruningSection.model_validate({**settings, "pruning_configs": list(config.pruning_configs or [])})


class PruningHooks:
    """INC pruning callbacks, called once per *optimizer* step (not per micro-batch), so schedules
    mean the same thing with gradient accumulation."""

    def __init__(self, model: Any, config: Any):
        prepare_compression = _import_inc("neural_compressor.training").prepare_compression

        # INC logs every layer at every pruning step; keep that for --debug.
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("neural_compressor").setLevel(logging.WARNING)
        self.manager = prepare_compression(model, config)
        self.callbacks = self.manager.callbacks
        self.pruners = [p for c in self.callbacks.callbacks_list for p in getattr(c, "pruners", [])]

    def warn_unreached(self, steps: int) -> None:
        """A schedule that ends after the last step never reaches its target (say, epochs shared by
        more processes than the recipe was written for)."""
        for pruner in self.pruners:
            if pruner.end_step >= steps and pruner.config.get("pruning_type") != "pattern_lock":
                log.warning("pruning ends at step %d but training has %d steps: the target sparsity %.0f%% will "
                            "not be reached; lower end_step", pruner.end_step, steps,
                            100 * pruner.target_sparsity_ratio)

    def train_begin(self) -> None:
        self.callbacks.on_train_begin()

    def step_begin(self, step: int) -> None:
        self.callbacks.on_step_begin(step)

    def before_optimizer_step(self) -> None:
        self.callbacks.on_before_optimizer_step()

    def after_optimizer_step(self) -> None:
        self.callbacks.on_after_optimizer_step()
        self.callbacks.on_step_end()

    def train_end(self) -> None:
        self.callbacks.on_train_end()

    def state_dict(self) -> list[dict[str, Any]]:
        """Each pruner's masks, criterion scores and schedule position: what an epoch checkpoint needs
        so a resumed run prunes exactly as an uninterrupted one (and revives nothing)."""
        states = []
        for pruner in self.pruners:
            state = {key: getattr(pruner, key) for key in _PRUNER_STATE if hasattr(pruner, key)}
            if getattr(pruner, "criterion", None) is not None:
                state["scores"] = pruner.criterion.scores
            states.append(state)
        return states

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for pruner, state in zip(self.pruners, states, strict=True):
            state = dict(state)
            if "scores" in state:
                pruner.criterion.scores = state.pop("scores")
            for key, value in state.items():
                setattr(pruner, key, value)
            pruner.mask_weights()


_PRUNER_STATE = ("masks", "global_step", "handled_global_step", "completed_pruned_cnt", "current_sparsity_ratio",
                 "init_sparsity_ratio")
