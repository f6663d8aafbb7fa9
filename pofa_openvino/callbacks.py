"""The training loop's events and the state they see, after Hugging Face's ``TrainerCallback`` (whose
event names Intel Neural Compressor's pruning hooks share): the loop calls every callback at fixed
points, so pruning, the zero-mask lock, the teacher, checkpoints and progress plug in without a branch
in the loop. The pruning callback lives in ``prune``, checkpointing in ``checkpoint``; the teacher's
placement and the progress bar are here."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .progress import progress

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where training stands, counted in optimizer steps; ``PERSISTED`` is what a checkpoint records."""

    max_steps: int
    processes: int = 1
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # steps done in the current epoch (a checkpoint between epochs has 0)
    loss: float = math.nan  # the last step's loss, averaged over micro-batches and processes
    learning_rate: float = 0.0  # the rate the next step will use
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per finished epoch
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's evaluation
    seconds: float = 0.0  # training time up to ``step``, every segment of a resumed run included

    PERSISTED: ClassVar[tuple[str, ...]] = ("step", "epoch", "epoch_step", "loss", "history", "processes",
                                            "seconds")

    @property
    def done(self) -> bool:
        return self.step >= self.max_steps

    def finish_step(self, loss: float, learning_rate: float) -> None:
        self.step += 1
        self.epoch_step += 1
        self.loss, self.learning_rate = loss, learning_rate

    def finish_epoch(self, metrics: dict[str, float]) -> None:
        self.epoch, self.epoch_step, self.metrics = self.epoch + 1, 0, metrics
        self.history.append({"epoch": self.epoch, "step": self.step, "loss": round(self.loss, 6), **metrics})

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.PERSISTED}

    def load_json(self, saved: dict[str, Any]) -> None:
        """Continue from a checkpoint's record (older ones lack ``epoch_step``, ``processes`` and ``seconds``)."""
        for name in self.PERSISTED:
            if name in saved:
                setattr(self, name, saved[name])


class TrainerCallback:
    """No-op handlers for each event of the loop; a callback overrides those it needs.

    Once per run: ``on_train_begin`` (optimizer and schedule built, nothing trained; a checkpoint may
    move ``state`` forward), ``on_train_end`` (after the last step's epoch, only when training
    finished). Per optimizer step: ``on_step_begin``, ``on_before_optimizer_step`` (gradients
    accumulated and clipped), ``on_after_optimizer_step`` (weights updated, gradients still there),
    ``on_step_end`` (schedule stepped, gradients cleared, ``state.step`` counted). Per epoch:
    ``on_epoch_end`` (evaluated, ``state.history`` recorded). ``close`` releases what
    ``on_train_begin`` opened, also when training stops on an error or Ctrl-C."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_begin(self, state: TrainState) -> None: ...

    def on_before_optimizer_step(self, state: TrainState) -> None: ...

    def on_after_optimizer_step(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...

    def close(self) -> None: ...


class Stateful(Protocol):
    """A callback whose state a checkpoint keeps (the pruners' masks and schedule position)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


def _dispatch(event: str) -> Any:
    def call(self: CallbackList, state: TrainState) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(state)

    call.__name__ = event
    return call


class CallbackList:
    """Calls each event on every callback, in the order given (Nones, the callbacks a run does without,
    are left out): what one callback does at an event, the next one sees."""

    def __init__(self, callbacks: list[TrainerCallback | None]):
        self.callbacks = [callback for callback in callbacks if callback is not None]

    on_train_begin = _dispatch("on_train_begin")
    on_step_begin = _dispatch("on_step_begin")
    on_before_optimizer_step = _dispatch("on_before_optimizer_step")
    on_after_optimizer_step = _dispatch("on_after_optimizer_step")
    on_step_end = _dispatch("on_step_end")
    on_epoch_end = _dispatch("on_epoch_end")
    on_train_end = _dispatch("on_train_end")

    @contextmanager
    def training(self, state: TrainState) -> Iterator[None]:
        """``on_train_begin`` on entry and ``on_train_end`` when the body finishes; ``close`` either way."""
        try:
            self.on_train_begin(state)
            yield
            self.on_train_end(state)
        finally:
            for callback in self.callbacks:
                callback.close()


class TeacherOnDevice(TrainerCallback):
    """Distillation's frozen teacher trains beside the student: on its device for the run, back on the
    CPU afterwards (where saving, NNCF and export work)."""

    def __init__(self, teacher: Any, where: Any):
        self.teacher, self.where = teacher, where

    def on_train_begin(self, state: TrainState) -> None:
        self.teacher.to(self.where)

    def on_train_end(self, state: TrainState) -> None:
        self.teacher.cpu()


class ProgressLog(TrainerCallback):
    """A progress bar (plain log lines off a terminal) with each step's loss and learning rate, and a
    line per epoch with its evaluation."""

    def __init__(self, every: int):
        self.every, self._open = every, ExitStack()
        self._bar: Any = None

    def on_train_begin(self, state: TrainState) -> None:
        self._bar = self._open.enter_context(progress("train", state.max_steps, every=self.every, done=state.step))

    def on_step_end(self, state: TrainState) -> None:
        self._bar.advance(loss=state.loss, lr=state.learning_rate)

    def on_epoch_end(self, state: TrainState) -> None:
        log.info("epoch %d (step %d): loss %.4f, eval %s", state.epoch, state.step, state.loss, state.metrics)

    def close(self) -> None:
        self._open.close()
