"""Fine-tuning loop: AdamW with linear warmup/decay, gradient accumulation, INC pruning hooks and
optional logit distillation from a dense teacher."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from .data import ClassificationData
from .data.classification import batches
from .evaluate import evaluate_torch
from .progress import progress

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    effective_batch_size: int
    final_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float,
                      alpha: float) -> Any:
    """alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher/T || student/T), as in PruneOFA."""
    import torch.nn.functional as F

    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                  F.softmax(teacher_logits / temperature, dim=-1), reduction="batchmean")
    return alpha * ce + (1.0 - alpha) * temperature**2 * kl


def total_steps(n_examples: int, training: Any) -> int:
    """Optimizer steps the run will take (what INC's start/end steps count)."""
    if training.max_steps > 0:
        return training.max_steps
    per_epoch = math.ceil(n_examples / (training.per_device_train_batch_size * training.gradient_accumulation_steps))
    return max(1, math.ceil(training.num_train_epochs * per_epoch))


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fine_tune(model: Any, tokenizer: Any, data: ClassificationData, training: Any, max_length: int,
              pruning_config: Any = None, teacher: Any = None, distillation: Any = None,
              with_f1: bool = False) -> TrainResult:
    """Train ``model`` in place. ``pruning_config`` is an INC ``WeightPruningConfig`` or None."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from .prune import PruningHooks

    seed_everything(training.seed)
    steps = total_steps(len(data.train), training)
    accumulation = training.gradient_accumulation_steps
    micro_batch = training.per_device_train_batch_size
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not _no_decay(n)]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and _no_decay(n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": training.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=training.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(training.warmup_ratio * steps), steps)
    hooks = PruningHooks(model, pruning_config) if pruning_config is not None else None
    if teacher is not None:
        teacher.eval()
    log.info("fine-tuning: %d optimizer steps, effective batch %d (%d x %d accumulation)%s%s", steps,
             micro_batch * accumulation, micro_batch, accumulation,
             ", INC pruning" if hooks else "", ", distillation" if teacher is not None else "")
    if hooks:
        hooks.train_begin()
    history: list[dict[str, float]] = []
    step, epoch, loss_value, started = 0, 0, float("nan"), time.perf_counter()
    micro_batches = _micro_batches(tokenizer, data, micro_batch, max_length, training.seed)
    with progress("fine-tune", steps, every=training.logging_steps) as bar:
        while step < steps:
            model.train()
            if hooks:
                hooks.step_begin(step)
            running = 0.0
            for _ in range(accumulation):
                batch_epoch, batch = next(micro_batches)
                labels = batch.pop("labels")
                logits = model(**batch).logits
                if teacher is not None:
                    with torch.inference_mode():
                        teacher_logits = teacher(**batch).logits
                    loss = distillation_loss(logits, teacher_logits.clone(), labels, distillation.temperature,
                                             distillation.alpha)
                else:
                    loss = torch.nn.functional.cross_entropy(logits, labels)
                (loss / accumulation).backward()
                running += loss.item() / accumulation
            torch.nn.utils.clip_grad_norm_(model.parameters(), training.max_grad_norm)
            if hooks:
                hooks.before_optimizer_step()
            optimizer.step()
            if hooks:
                hooks.after_optimizer_step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, loss_value = step + 1, running
            bar.advance(loss=loss_value, lr=scheduler.get_last_lr()[0])
            if batch_epoch > epoch or step == steps:
                epoch = batch_epoch
                metrics = evaluate_torch(model, tokenizer, data.primary_eval, training.per_device_eval_batch_size,
                                         max_length, with_f1)
                history.append({"step": step, "loss": round(loss_value, 6), **metrics})
                log.info("step %d: loss %.4f, eval %s", step, loss_value, metrics)
    if hooks:
        hooks.train_end()
    return TrainResult(steps=step, epochs=round(step * micro_batch * accumulation / len(data.train), 3),
                       effective_batch_size=micro_batch * accumulation, final_loss=round(loss_value, 6),
                       seconds=round(time.perf_counter() - started, 2), history=history)


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def _micro_batches(tokenizer: Any, data: ClassificationData, batch_size: int, max_length: int, seed: int):
    """Endless (epoch, batch) stream; each epoch reshuffles with a seed derived from the recipe's."""
    epoch = 0
    while True:
        order = list(range(len(data.train)))
        random.Random(seed + epoch).shuffle(order)
        for batch in batches(tokenizer, data.train, batch_size, max_length, order):
            yield epoch, batch
        epoch += 1
