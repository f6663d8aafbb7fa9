"""Training checkpoints and resume: a Hugging Face directory plus the optimizer, schedule, pruner and
RNG state, so an interrupted run continues exactly as an uninterrupted one would have."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .callbacks import Stateful, TrainerCallback, TrainState
from .distributed import SOLO, World
from .rundir import staged_dir, write_json

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
TENSORS_FILE = "training_state.pt"


def resumable(checkpoint_dir: Path | None, fingerprint: str) -> bool:
    """Whether ``checkpoint_dir`` holds an epoch checkpoint of this very training (same fingerprint)."""
    state = checkpoint_dir / STATE_FILE if checkpoint_dir else None
    return bool(state and state.is_file() and json.loads(state.read_text())["fingerprint"] == fingerprint)


@dataclass
class Checkpointing(TrainerCallback):
    """Resume from ``directory`` when training begins, if it holds a checkpoint of the same
    ``fingerprint``; save there every ``save_steps`` steps and after each epoch but the last. Every
    process restores; rank 0 alone writes. ``parts`` are the callbacks whose state the checkpoint
    keeps, by key (None: recorded as absent)."""

    directory: Path
    fingerprint: str
    model: Any
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    where: Any
    parts: dict[str, Stateful | None] = field(default_factory=dict)
    save_steps: int = 0
    world: World = SOLO

    def on_train_begin(self, state: TrainState) -> None:
        if resumable(self.directory, self.fingerprint):
            self._restore(state)
            log.info("resuming training at step %d of %d (%d epochs and %d steps done)", state.step,
                     state.max_steps, state.epoch, state.epoch_step)

    def on_step_end(self, state: TrainState) -> None:
        if self.save_steps and state.step % self.save_steps == 0 and not state.done:
            self._save(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.done:
            self._save(state)

    def _save(self, state: TrainState) -> None:
        """Written beside and swapped in whole: an interruption leaves the previous checkpoint."""
        import numpy as np
        import torch

        if not self.world.is_main:
            return
        with staged_dir(self.directory) as out:
            self.model.save_pretrained(out)
            self.tokenizer.save_pretrained(out)
            parts = {key: part.state_dict() if part is not None else None for key, part in self.parts.items()}
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), **parts,
                        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                "python": random.getstate()}}, out / TENSORS_FILE)
            write_json(out / STATE_FILE, {**state.to_json(), "fingerprint": self.fingerprint})
        log.info("checkpoint at step %d: %s", state.step, self.directory)

    def _restore(self, state: TrainState) -> None:
        import numpy as np
        import torch

        from .errors import PofaError

        saved_state = json.loads((self.directory / STATE_FILE).read_text())
        writers = saved_state.get("processes", 1)
        if writers != self.world.size:
            raise PofaError(f"{self.directory} was written by {writers} training processes and this run has "
                            f"{self.world.size}: the effective batch would change mid-run. Resume with {writers} "
                            f"processes, or remove {self.directory} to start training over")
        saved = torch.load(self.directory / TENSORS_FILE, weights_only=False, map_location=self.where)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        for key, part in self.parts.items():
            if part is not None:
                part.load_state_dict(saved[key])
        torch.set_rng_state(saved["rng"]["torch"].cpu())
        np.random.set_state(saved["rng"]["numpy"])
        random.setstate(saved["rng"]["python"])
        state.load_json(saved_state)
