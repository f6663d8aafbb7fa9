"""The pipeline's stages. Each reads what earlier stages left on disk and returns its outputs and the
report sections it measured; heavy libraries are imported here, inside the stage that needs them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .recipe import Recipe

log = logging.getLogger(__name__)


@dataclass
class StageOutput:
    outputs: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """What a stage may read: the recipe, the run directory and the outputs of earlier stages."""

    recipe: Recipe
    run_dir: Path
    outputs: dict[str, dict[str, Any]]
    fingerprint: str = ""  # of the stage now running: what its own partial state must match to be resumed

    @cached_property
    def data(self) -> Any:
        from .data import load_task_data

        return load_task_data(self.recipe.task, self.recipe.data)

    def model_dir(self) -> str:
        """The newest model: the fine-tuned checkpoint if training ran, else the loaded one."""
        if "train" in self.outputs:
            return str(self.run_dir / self.outputs["train"]["model_dir"])
        return self.outputs["load"]["model_path"]

    def prunable(self) -> Any:
        """The layer-name filter of the recipe's pruning section (INC's defaults when it has none)."""
        from .prune import prunable_matcher
        from .recipe import PruningSection

        return prunable_matcher(self.recipe.pruning or PruningSection())


def load(ctx: StageContext) -> StageOutput:
    """Resolve the model, check the data, and measure the sparsity the checkpoint arrives with."""
    from .modeling import load_model, load_tokenizer
    from .prune import sparsity_report
    from .registry import resolve_model

    recipe = ctx.recipe
    path = resolve_model(recipe.model.name_or_path)
    data = ctx.data
    load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    model = load_model(path, recipe.task, data.labels, recipe.model.revision, recipe.model.trust_remote_code)
    sparsity = sparsity_report(model, ctx.prunable())
    log.info("loaded model sparsity (prunable Linear layers): %.2f%%", 100 * sparsity["overall"])
    report = {
        "model": {"name_or_path": recipe.model.name_or_path, "path": path, "architecture": model.config.model_type,
                  "parameters": sum(p.numel() for p in model.parameters()), "labels": data.labels},
        "sparsity": {**sparsity, "loaded_overall": sparsity["overall"]},
    }
    return StageOutput(outputs={"model_path": path, "sparsity_overall": sparsity["overall"]}, report=report)


def train(ctx: StageContext) -> StageOutput:
    """Fine-tune (with INC pruning and distillation when the recipe asks) into ``checkpoint/``.

    Each finished epoch leaves ``train-state/``; a resumed run continues from it, then removes it."""
    import shutil

    from .modeling import load_model, load_tokenizer
    from .prune import inc_config, sparsity_report
    from .rundir import staged_dir
    from .train import fine_tune, resumable, seed_everything

    recipe = ctx.recipe
    seed_everything(recipe.training.seed)  # before loading: a new task head is initialised at random
    state_dir = ctx.run_dir / "train-state"
    path = str(state_dir) if resumable(state_dir, ctx.fingerprint) else ctx.outputs["load"]["model_path"]
    tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    model = load_model(path, recipe.task, ctx.data.labels, recipe.model.revision, recipe.model.trust_remote_code)
    teacher = _teacher(recipe, ctx.data) if recipe.distillation is not None else None
    pruning = inc_config(recipe.pruning) if recipe.pruning is not None else None
    result = fine_tune(model, tokenizer, ctx.data, recipe.training, recipe.data.max_seq_length, pruning,
                       teacher, recipe.distillation, state_dir, ctx.fingerprint)
    with staged_dir(ctx.run_dir / "checkpoint") as out:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    shutil.rmtree(state_dir, ignore_errors=True)
    sparsity = sparsity_report(model, ctx.prunable())
    report = {"training": vars(result),
              "sparsity": {**sparsity, "loaded_overall": ctx.outputs["load"]["sparsity_overall"]}}
    return StageOutput(outputs={"model_dir": "checkpoint"}, report=report)


def _teacher(recipe: Recipe, data: Any) -> Any:
    """The dense teacher, checked to answer the same task (same label count for classification)."""
    from .errors import PofaError
    from .modeling import load_model

    teacher = load_model(recipe.distillation.teacher, recipe.task)
    if data.labels is not None and teacher.config.num_labels != len(data.labels):
        raise PofaError(f"distillation.teacher has {teacher.config.num_labels} labels, the task has "
                        f"{len(data.labels)}: the teacher must be fine-tuned on the same task")
    return teacher


def evaluate(ctx: StageContext) -> StageOutput:
    """The task metric of the newest torch model on every evaluation split."""
    from .evaluate import evaluate_torch
    from .modeling import load_model, load_tokenizer

    recipe = ctx.recipe
    path = ctx.model_dir()
    # Without a train stage ``path`` is the recipe's own model: keep its revision and remote-code choice.
    tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    model = load_model(path, recipe.task, revision=recipe.model.revision,
                       trust_remote_code=recipe.model.trust_remote_code)
    scores = {split: evaluate_torch(model, tokenizer, ctx.data, split, _eval_batch(recipe), recipe.data.max_seq_length)
              for split in ctx.data.eval}
    primary = next(iter(scores))
    accuracy = {"metric": ctx.data.metric, "split": primary,
                "eval_samples": len(ctx.data.eval[primary]), "torch_fp32": scores[primary]}
    if len(scores) > 1:
        accuracy["splits"] = scores
    log.info("evaluation (%s): %s", primary, scores[primary])
    return StageOutput(report={"accuracy": accuracy})


def _eval_batch(recipe: Recipe) -> int:
    return recipe.training.per_device_eval_batch_size if recipe.training else 64
