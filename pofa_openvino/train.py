"""The training loop for any objective (task fine-tuning, prune-once pre-training): AdamW with warmup
and a learning-rate schedule (Hugging Face's, or held while pruning), gradient accumulation, bf16
autocast and DDP, an evaluation per epoch. INC pruning, the teacher, checkpoints with resume, and
progress plug in as callbacks (``callbacks``, ``prune``, ``checkpoint``). The task objective and its
distillation losses (logits, hidden states) live here too."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import interrupts
from .callbacks import CallbackList, ProgressLog, TeacherOnDevice, TrainerCallback, TrainState
from .checkpoint import Checkpointing
from .data import TaskData
from .distributed import SOLO, World, bf16, device, to_device
from .evaluate import evaluate_torch
from .prune import PruningCallback

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    effective_batch_size: int
    final_loss: float
    seconds: float  # training time, the segments before a resume included
    resumed_from_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    mixed_precision: str = "no"
    processes: int = 1
    ranks: list[dict[str, Any]] = field(default_factory=list)  # what each process trained on (several only)
    masks_identical: bool | None = None  # the zero pattern, compared across processes (several only)


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float,
                      alpha: float) -> Any:
    """alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher/T || student/T), as in PruneOFA. With
    ``alpha`` 0 (pure KD) the labels are not read at all."""
    import torch.nn.functional as F

    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                  F.softmax(teacher_logits / temperature, dim=-1), reduction="batchmean")
    soft = (1.0 - alpha) * temperature**2 * kl
    return soft if alpha == 0 else alpha * F.cross_entropy(student_logits, labels) + soft


def hidden_state_mse(student: list[Any], teacher: list[Any], attention_mask: Any) -> Any:
    """Mean over the pairs of hidden states of their mean squared error on the real (unpadded) tokens."""
    mask = attention_mask.unsqueeze(-1).to(student[0].dtype)
    width = student[0].shape[-1]
    losses = [(((s - t.clone()) ** 2) * mask).sum() / (mask.sum() * width)
              for s, t in zip(student, teacher, strict=True)]
    return sum(losses) / len(losses)


def chosen_layers(hidden_states: Any, layers: str | list[int]) -> list[Any]:
    """``last``, ``all`` or the listed indices of a model's ``hidden_states`` (0: the embeddings)."""
    if layers == "last":
        return [hidden_states[-1]]
    return list(hidden_states) if layers == "all" else [hidden_states[i] for i in layers]


def hidden_state_mismatch(student: Any, teacher: Any, layers: str | list[int]) -> str | None:
    """Why the hidden states of models with configs ``student`` and ``teacher`` cannot be compared one to
    one at ``layers`` (width, depth for ``all``, an index past either model's layers), or None."""
    def depth(config: Any) -> int | None:
        return getattr(config, "num_hidden_layers", None)

    names = ["hidden_size"] + (["num_hidden_layers"] if layers == "all" else [])
    for name in names:
        ours, theirs = getattr(student, name, None), getattr(teacher, name, None)
        if ours != theirs:
            return f"the teacher has {name} {theirs}, the model {ours}: hidden states are compared one to one"
    deepest = max(layers) if isinstance(layers, list) else 0
    shallow = min(depth(student) or 0, depth(teacher) or 0)
    if deepest > shallow:
        return (f"layer {deepest} is past the last layer ({shallow}: index 0 is the embeddings, i the output of "
                "layer i) of the model or the teacher")
    return None


def task_loss(data: TaskData, outputs: Any, batch: dict[str, Any], teacher_outputs: Any = None,
              distillation: Any = None) -> Any:
    """Mean over the task's heads (logits; or start and end logits) of CE, or of the distillation loss;
    plus ``distillation.hidden_states.weight`` x the hidden-state MSE when the recipe asks for it."""
    import torch.nn.functional as F

    losses = []
    for head, target in zip(data.heads, data.targets, strict=True):
        if teacher_outputs is None:
            losses.append(F.cross_entropy(outputs[head], batch[target]))
        else:
            losses.append(distillation_loss(outputs[head], teacher_outputs[head].clone(), batch[target],
                                            distillation.temperature, distillation.alpha))
    loss = sum(losses) / len(losses)
    hidden = distillation.hidden_states if teacher_outputs is not None and distillation is not None else None
    if hidden is None:
        return loss
    pairs = (chosen_layers(o.hidden_states, hidden.layers) for o in (outputs, teacher_outputs))
    return loss + hidden.weight * hidden_state_mse(*pairs, batch["attention_mask"])


def frozen_outputs(teacher: Any, inputs: dict[str, Any]) -> Any:
    """A teacher's outputs, with no autograd graph (callers clone what the loss differentiates against)."""
    import torch

    with torch.inference_mode():
        return teacher(**inputs)


def total_steps(n_items: int, training: Any, processes: int = 1) -> int:
    """Optimizer steps the run will take (what INC's start/end steps count)."""
    if training.max_steps > 0:
        return training.max_steps
    return max(1, math.ceil(training.num_train_epochs * steps_per_epoch(n_items, training, processes)))


def steps_per_epoch(n_items: int, training: Any, processes: int = 1) -> int:
    return math.ceil(n_items / effective_batch_size(training, processes))


def effective_batch_size(training: Any, processes: int = 1) -> int:
    """Examples per optimizer step: per-device batch x processes x accumulation."""
    return training.per_device_train_batch_size * processes * training.gradient_accumulation_steps


def warmup_steps(training: Any, steps: int) -> int:
    """``warmup_steps`` when set, else ``warmup_ratio`` of ``steps`` rounded down (Hugging Face rounds up)."""
    return training.warmup_steps or int(training.warmup_ratio * steps)


def learning_rate_schedule(optimizer: Any, training: Any, steps: int, pruning_ends: int = 0) -> Any:
    """``training.lr_scheduler_type`` over a run of ``steps`` optimizer steps: Hugging Face's own scheduler
    of that name, or ``linear_after_pruning`` (warmup, the peak held until ``pruning_ends``, the last
    pruning step, then linear decay to zero; plain ``linear`` when pruning ends within the warmup)."""
    from functools import partial

    import torch
    from transformers import get_scheduler

    from .recipe import HOLDS_WHILE_PRUNING

    warmup = warmup_steps(training, steps)
    if training.lr_scheduler_type != HOLDS_WHILE_PRUNING:
        return get_scheduler(training.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_held_while_pruning, warmup=warmup,
                                                                hold=max(warmup, pruning_ends), steps=steps))


def _held_while_pruning(step: int, warmup: int, hold: int, steps: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    if step < hold:
        return 1.0
    return max(0.0, (steps - step) / max(1, steps - hold))


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Objective(Protocol):
    """What the training loop optimises: its items, how they batch, the loss, and what it reports
    after each epoch. Task fine-tuning and prune-once pre-training are the two objectives."""

    teacher: Any  # a frozen model the loss reads, or None; the loop puts it on the training device

    def train_items(self) -> list[Any]: ...

    def collate(self, items: list[Any]) -> dict[str, Any]: ...

    def loss(self, model: Any, batch: dict[str, Any]) -> Any: ...

    def evaluate(self, model: Any) -> dict[str, float]: ...


@dataclass
class TaskObjective:
    """Fine-tuning on a task: cross-entropy on its heads, or distillation from a teacher; the task
    metric on the first evaluation split after each epoch."""

    data: TaskData
    tokenizer: Any
    max_length: int
    eval_batch_size: int
    teacher: Any = None
    distillation: Any = None

    def train_items(self) -> list[Any]:
        return self.data.train_items(self.tokenizer, self.max_length)

    def collate(self, items: list[Any]) -> dict[str, Any]:
        return self.data.collate(self.tokenizer, items, self.max_length)

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in batch.items() if k not in self.data.targets}
        if self.teacher is not None and self.distillation is not None and self.distillation.hidden_states:
            inputs["output_hidden_states"] = True
        teacher_outputs = frozen_outputs(self.teacher, inputs) if self.teacher is not None else None
        return task_loss(self.data, model(**inputs), batch, teacher_outputs, self.distillation)

    def evaluate(self, model: Any) -> dict[str, float]:
        return evaluate_torch(model, self.tokenizer, self.data, next(iter(self.data.eval)), self.eval_batch_size,
                              self.max_length)


def fine_tune(model: Any, tokenizer: Any, data: TaskData, training: Any, max_length: int,
              pruning_config: Any = None, teacher: Any = None, distillation: Any = None,
              checkpoint_dir: Path | None = None, fingerprint: str = "", world: World = SOLO) -> TrainResult:
    """Train ``model`` in place on a task. ``pruning_config`` is an INC ``WeightPruningConfig`` or None."""
    if teacher is not None:
        teacher.eval()
    objective = TaskObjective(data, tokenizer, max_length, training.per_device_eval_batch_size, teacher, distillation)
    return train_loop(model, tokenizer, objective, training, pruning_config, checkpoint_dir, fingerprint, world)


def train_loop(model: Any, tokenizer: Any, objective: Objective, training: Any, pruning_config: Any = None,
               checkpoint_dir: Path | None = None, fingerprint: str = "", world: World = SOLO,
               extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """AdamW with the recipe's learning-rate schedule, accumulation, clipping and INC pruning hooks over ``objective``,
    on ``training.device``; with several processes (``world``), PyTorch DDP over shards of each step.

    With ``checkpoint_dir``, each finished epoch leaves an HF directory plus optimizer, scheduler,
    pruner and RNG state there (written by rank 0); when it already holds a checkpoint of the same
    ``fingerprint`` (and ``model`` was loaded from it), training continues after that epoch.

    The loop itself only steps: pruning (or the zero-mask lock), the teacher, checkpoints and progress
    are callbacks (``callbacks.TrainerCallback``) called at its events; ``extra_callbacks`` come after them."""
    import torch

    seed_everything(training.seed)
    if world.size > 1:  # dropout and masking draws differ per rank; the shard order is seeded apart
        torch.manual_seed(training.seed + world.rank)
    where = device(training.device, world)
    autocast = bf16(training.mixed_precision, where)
    model.to(where)  # before INC prepares its masks, which live beside the weights
    items = objective.train_items()
    steps = total_steps(len(items), training, world.size)
    optimizer = _adamw(model, training)
    # With max_steps, loading the recipe already warned about a back-loaded pruning schedule.
    pruning = None if pruning_config is None else \
        PruningCallback(model, pruning_config, check_back_loaded=training.max_steps <= 0)
    scheduler = learning_rate_schedule(optimizer, training, steps, pruning.end_step if pruning else 0)
    checkpointing = None if checkpoint_dir is None else \
        Checkpointing(checkpoint_dir, fingerprint, model, tokenizer, optimizer, scheduler, where,
                      parts={"pruning": pruning}, save_steps=training.save_steps, world=world)
    teacher = None if objective.teacher is None else TeacherOnDevice(objective.teacher, where)
    # In this order: a checkpoint restores the pruners after INC prepared them, and progress starts where it left off.
    callbacks = CallbackList([pruning, teacher, checkpointing, ProgressLog(every=training.logging_steps),
                              *extra_callbacks])
    accumulation, micro_batch = training.gradient_accumulation_steps, training.per_device_train_batch_size
    batch_size = effective_batch_size(training, world.size)
    log.info("training on %s%s: %d optimizer steps, effective batch %d (%d per device x %d processes x %d "
             "accumulation)%s", where, ", bf16 autocast" if autocast else "", steps, batch_size, micro_batch,
             world.size, accumulation, ", INC pruning" if pruning else "")
    state, examples = TrainState(max_steps=steps, processes=world.size), 0
    with callbacks.training(state):
        resumed_from, before = state.step, state.seconds
        trained = _parallel(model, objective, items[:micro_batch], where, world)
        started = time.perf_counter()

        def clock() -> None:  # before the callbacks that checkpoint, so a resumed run's time adds up
            state.seconds = before + time.perf_counter() - started

        while not state.done:
            model.train()
            for group in _epoch_steps(objective, items, micro_batch, accumulation, training.seed + state.epoch,
                                      world, skip=state.epoch_step):
                interrupts.check()
                callbacks.on_step_begin(state)
                loss = _backward(trained, objective, group, where, autocast, world)
                examples += sum(len(next(iter(batch.values()))) for batch in group)  # this process's share
                _require_finite(loss, state.step + 1)
                torch.nn.utils.clip_grad_norm_(model.parameters(), training.max_grad_norm)
                callbacks.on_before_optimizer_step(state)
                optimizer.step()
                callbacks.on_after_optimizer_step(state)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.finish_step(loss, scheduler.get_last_lr()[0])
                clock()
                callbacks.on_step_end(state)
                if state.done:
                    break
            state.finish_epoch(world.broadcast(objective.evaluate(model) if world.is_main else None))
            clock()
            callbacks.on_epoch_end(state)
    result = TrainResult(steps=state.step, epochs=round(state.step * batch_size / len(items), 3),
                         effective_batch_size=batch_size, final_loss=round(state.loss, 6),
                         seconds=round(state.seconds, 2), resumed_from_step=resumed_from,
                         history=state.history, device=where.type, mixed_precision="bf16" if autocast else "no",
                         processes=world.size)
    if world.size > 1:
        _agree_across_ranks(model, world, result, examples)
    model.cpu()  # what follows training (saving, NNCF, export, OpenVINO) works on the CPU
    return result


def _adamw(model: Any, training: Any) -> Any:
    """AdamW with the recipe's settings; biases and layer norms without weight decay."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.requires_grad and not _no_decay(n)]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and _no_decay(n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": training.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=training.learning_rate,
                             betas=(training.adam_beta1, training.adam_beta2), eps=training.adam_epsilon)


def _backward(trained: Any, objective: Objective, group: list[dict[str, Any]], where: Any, autocast: bool,
              world: World) -> float:
    """One optimizer step's gradients, accumulated over its micro-batches (each loss scaled by their
    number); returns the step's loss, averaged over the micro-batches and the processes."""
    import torch

    running = 0.0
    for index, batch in enumerate(group):
        # Under DDP, gradients are averaged across processes once per step, on the last micro-batch.
        sync = nullcontext() if world.size == 1 or index == len(group) - 1 else trained.no_sync()
        with sync:
            with torch.autocast(where.type, dtype=torch.bfloat16, enabled=autocast):
                loss = objective.loss(trained, to_device(batch, where))
            (loss / len(group)).backward()
        running += loss.item() / len(group)
    return world.mean(running)


def _require_finite(loss: float, step: int) -> None:
    """A NaN or infinite loss poisons every weight at the next optimizer step: stop before it."""
    from .errors import StageError

    if not math.isfinite(loss):
        raise StageError(f"the training loss is {loss} at step {step}: training stopped before the weights were "
                         "updated with it; lower training.learning_rate (or check the data), then rerun with --resume")


def _parallel(model: Any, objective: Objective, probe: list[Any], where: Any, world: World) -> Any:
    """``model`` itself, or wrapped in DDP when several processes train it.

    DDP expects a gradient for every trainable parameter at every step. A probe step (its RNG draws
    undone) finds those that never get one, such as a headless encoder's pooler under a hidden-state
    loss, and freezes them: the optimizer skips them anyway, and DDP need not search the graph each step."""
    if world.size == 1:
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
        objective.loss(model, to_device(objective.collate(probe), where)).backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, parameter in model.named_parameters():
        parameter.grad = None
        if name in unused:
            parameter.requires_grad_(False)
    if unused:
        log.info("frozen under DDP (no gradient reaches them): %s", ", ".join(unused))
    return DistributedDataParallel(model, device_ids=[where.index] if where.type == "cuda" else None)


def _agree_across_ranks(model: Any, world: World, result: TrainResult, examples: int) -> None:
    """Every rank's share of the work, and proof that all of them hold the same zero pattern."""
    import hashlib

    from .errors import PofaError
    from .prune import linear_weights

    digest = hashlib.sha256()
    for name, weight in sorted(linear_weights(model).items()):
        digest.update(name.encode() + (weight == 0).cpu().numpy().tobytes())
    ranks = world.gather({"rank": world.rank, "examples": examples, "steps": result.steps,
                          "zero_pattern_sha256": digest.hexdigest()})
    result.ranks = ranks
    result.masks_identical = len({r["zero_pattern_sha256"] for r in ranks}) == 1
    if not result.masks_identical:
        raise PofaError("the pruning masks differ across processes: " + ", ".join(
            f"rank {r['rank']} {r['zero_pattern_sha256'][:12]}" for r in ranks))
    log.info("%d processes trained (%s examples); zero pattern identical on every rank", world.size,
             "/".join(str(r["examples"]) for r in ranks))


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def _epoch_steps(objective: Objective, items: list[Any], micro_batch: int, accumulation: int, seed: int,
                 world: World = SOLO, skip: int = 0) -> Iterator[list[dict[str, Any]]]:
    """One epoch as optimizer steps, each a list of up to ``accumulation`` collated micro-batches; the
    order is shuffled by ``seed`` alone, so a resumed epoch sees the batches an uninterrupted one would
    (the first ``skip`` steps, done before the checkpoint, are left out uncollated).

    With several processes, each global micro-batch of ``micro_batch x processes`` examples is split
    between them in rank order (so N processes see what one process with N-fold accumulation sees),
    and the epoch is padded from its start, as ``DistributedSampler`` does, so every rank takes the same
    number of steps."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    if world.size > 1:
        share = micro_batch * world.size
        order = [order[i % len(order)] for i in range(math.ceil(len(order) / share) * share)]
        order = [i for start in range(0, len(order), share)
                 for i in order[start + world.rank * micro_batch:start + (world.rank + 1) * micro_batch]]
    starts = range(0, len(order), micro_batch)
    for first in range(0, len(starts), accumulation)[skip:]:
        yield [objective.collate([items[i] for i in order[s:s + micro_batch]])
               for s in starts[first:first + accumulation]]
