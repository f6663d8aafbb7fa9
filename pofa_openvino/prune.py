"""The one bridge to Intel Neural Compressor pruning, plus sparsity measured from the tensors."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from .callbacks import TrainerCallback, TrainState

log = logging.getLogger(__name__)


def prunable_matcher(section: Any) -> Callable[[str], bool]:
    """Which layer names the ``pruning`` section targets, matched as INC does: regular-expression
    searches of ``op_names`` (all when empty) minus ``excluded_op_names``."""
    return name_matcher(section.op_names, section.excluded_op_names)


def name_matcher(op_names: list[str] | None, excluded_op_names: list[str] | None) -> Callable[[str], bool]:
    included = [re.compile(p) for p in op_names or [".*"]]
    excluded = [re.compile(p) for p in excluded_op_names or []]
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


def inc_config(section: Any, model_type: str | None = None) -> Any:
    """Build INC's ``WeightPruningConfig`` from the recipe's ``pruning`` section (same vocabulary).

    ``unstructured`` is INC's ``1x1`` pattern. ``pattern_lock`` always locks element-wise (``1x1``):
    INC's block patterns lock whole blocks that hold any non-zero, which would revive the zeros inside
    them; an element mask keeps every zero, and with it any block structure the checkpoint has.
    ``ffn2_sparsity`` and ``mha_sparsity`` become the groups INC's ``parse_auto_slim_config`` would
    build (``channelx1`` on every second FFN Linear, ``mha`` on every attention), named from the
    architecture (``model_type``) instead of found by tracing."""
    WeightPruningConfig = _import_inc("neural_compressor.config").WeightPruningConfig  # noqa: N806

    def inc_values(values: dict[str, Any], inherited_type: str) -> dict[str, Any]:
        if values.get("pattern") == "unstructured" or values.get("pruning_type", inherited_type) == "pattern_lock":
            values["pattern"] = "1x1"
        return values

    settings = inc_values(section.model_dump(exclude={"pruning_configs", *_OURS}), section.pruning_type)
    groups = [inc_values(group.model_dump(exclude_none=True), section.pruning_type)
              for group in section.pruning_configs]
    if section.ffn2_sparsity is not None or section.mha_sparsity is not None:
        from .structure import require_layout

        layout = require_layout(model_type)
    if section.ffn2_sparsity is not None:
        groups.append({"pattern": "channelx1", "target_sparsity": section.ffn2_sparsity,
                       "op_names": [layout.ffn_output_names()]})
    if section.mha_sparsity is not None:
        groups.append({"pattern": "mha", "target_sparsity": section.mha_sparsity})
    return WeightPruningConfig(pruning_configs=groups or [{}], **settings)


_OURS = ("ffn2_sparsity", "mha_sparsity", "slim_multiple")  # recipe keys INC's config does not have


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


FRONT_LOADED_CUBIC = "zhu_gupta"


@functools.cache
def _front_loaded_cubic() -> type:
    """INC's iterative scheduler with the Zhu-Gupta cubic s_i + (s_f - s_i) * (1 - (1 - t)^3) (Zhu & Gupta
    2017, as PruneOFA and oBERT prune): INC 3.7.1 has only exp, cos, cube (s_f * t^3) and linear, in one
    ``if`` chain, and its ``get_scheduler`` picks a scheduler by start and end step alone, so a pruner
    asking for ``zhu_gupta`` gets this subclass in place of its own (same steps, same cap per op)."""
    schedulers = _import_inc("neural_compressor.compression.pruner.schedulers")

    class ZhuGuptaScheduler(schedulers.IterativeScheduler):
        def update_sparsity_ratio(self, target_ratio: float, current_prune_step: int, total_prune_steps: int,
                                  masks: Any = None, init_sparsity_ratio: float = 0.0) -> float:
            final = min(self.config.max_sparsity_ratio_per_op, target_ratio)
            done = float(current_prune_step) / total_prune_steps
            return min(target_ratio, init_sparsity_ratio + (final - init_sparsity_ratio) * (1.0 - (1.0 - done) ** 3))

    return ZhuGuptaScheduler


class PruningCallback(TrainerCallback):
    """INC's pruning hooks on the loop's events, once per *optimizer* step (not per micro-batch), so
    schedules mean the same thing with gradient accumulation. With ``pattern_lock`` (the zero-mask lock
    of a pruned-once checkpoint and of QAT) INC re-applies the checkpoint's masks after each step.

    ``check_back_loaded``: warn about a back-loaded schedule at the start (off when loading the recipe
    already did, for a run whose length ``max_steps`` fixes)."""

    def __init__(self, model: Any, config: Any, check_back_loaded: bool = True):
        prepare_compression = _import_inc("neural_compressor.training").prepare_compression

        # INC logs every layer at every pruning step; keep that for --debug.
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("neural_compressor").setLevel(logging.WARNING)
        if any(group.get("pattern") == "mha" for group in config.pruning_configs):
            self.inc = _named_attention_callbacks(model, config)
        else:
            self.inc = prepare_compression(model, config).callbacks
        self.pruners = [p for c in self.inc.callbacks_list for p in getattr(c, "pruners", [])]
        self.check_back_loaded = check_back_loaded
        iterative = _import_inc("neural_compressor.compression.pruner.schedulers").IterativeScheduler
        for pruner in self.pruners:
            if pruner.config.get("sparsity_decay_type") == FRONT_LOADED_CUBIC and \
                    isinstance(pruner.scheduler, iterative):
                pruner.scheduler = _front_loaded_cubic()(pruner.config)

    @property
    def end_step(self) -> int:
        """The last step any pruner prunes at (what ``linear_after_pruning`` holds the learning rate until)."""
        return max((pruner.end_step for pruner in self.pruners), default=0)

    def warn_unreached(self, steps: int) -> None:
        """A schedule that ends after the last step never reaches its target (say, epochs shared by
        more processes than the recipe was written for)."""
        for pruner in self.pruners:
            if pruner.end_step >= steps and pruner.config.get("pruning_type") != "pattern_lock":
                log.warning("pruning ends at step %d but training has %d steps: the target sparsity %.0f%% will "
                            "not be reached; lower end_step", pruner.end_step, steps,
                            100 * pruner.target_sparsity_ratio)

    def warn_back_loaded(self, steps: int) -> None:
        """A back-loaded shape (``cube``, ``cos``) that leaves little training after it (BACK_LOADED_RECOVERY)."""
        from .recipe import back_loaded_warning

        said = {back_loaded_warning(p.config.get("sparsity_decay_type"), p.config.get("pruning_type"), p.start_step,
                                    p.end_step, steps) for p in self.pruners}
        for message in sorted(filter(None, said)):
            log.warning("pruning: %s", message)

    def on_train_begin(self, state: TrainState) -> None:
        self.warn_unreached(state.max_steps)
        if self.check_back_loaded:
            self.warn_back_loaded(state.max_steps)
        self.inc.on_train_begin()

    def on_step_begin(self, state: TrainState) -> None:
        self.inc.on_step_begin(state.step)

    def on_before_optimizer_step(self, state: TrainState) -> None:
        self.inc.on_before_optimizer_step()

    def on_after_optimizer_step(self, state: TrainState) -> None:
        """INC's step ends here, before the schedule steps and the gradients are cleared: its pruners
        count the step (and would read gradients) at its ``on_step_end``."""
        self.inc.on_after_optimizer_step()
        self.inc.on_step_end()

    def on_train_end(self, state: TrainState) -> None:
        self.inc.on_train_end()

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


_PRUNER_STATE = ("masks", "head_masks", "global_step", "handled_global_step", "completed_pruned_cnt",
                 "current_sparsity_ratio", "init_sparsity_ratio")


def _named_attention_callbacks(model: Any, config: Any) -> Any:
    """INC's pruning callbacks, with each ``mha`` group's attention modules named from the architecture
    (INC's own searcher traces the model with ``torch.jit``, which fails on transformers 5); every
    other group is INC's as ``prepare_compression`` builds it."""
    from .structure import attention_modules

    callbacks = _import_inc("neural_compressor.compression.callbacks")
    get_pruner = _import_inc("neural_compressor.compression.pruner.pruners").get_pruner
    Model = _import_inc("neural_compressor.model").Model  # noqa: N806
    CallBacks = _import_inc("neural_compressor.training").CallBacks  # noqa: N806

    class NamedAttentionPruning(callbacks.PruningCallbacks):
        def _generate_pruners(self) -> None:
            everything = self.pruners_info
            heads = [info for info in everything if "mha" in info["pattern"]]
            self.pruners_info = [info for info in everything if "mha" not in info["pattern"]]
            super()._generate_pruners()
            for info in heads:
                named = name_matcher(info.get("op_names"), info.get("excluded_op_names"))
                self.pruners.append(get_pruner(info, attention_modules(model, named)))
            self.pruners_info = everything

    return CallBacks([NamedAttentionPruning(config, model=Model(model, conf=config))])
