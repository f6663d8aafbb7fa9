"""Prune once for all (Zafrir et al. 2021): a copy of a dense encoder is pruned with INC while it
distils from the frozen dense model on unlabeled text. The sparse pre-trained checkpoint then
transfers to any task with its zeros locked (``pruning: {pruning_type: pattern_lock}``).

Models with a masked-LM head distil its logits on the masked positions (0.5 * MLM CE + 0.5 * T^2 *
KL, as the paper); encoders without one (sentence-embedding checkpoints) distil hidden states (MSE)."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .distributed import SOLO, World, to_device
from .errors import DataError, RecipeError
from .recipe import PretrainSection
from .train import hidden_state_mismatch

log = logging.getLogger(__name__)

CONFIG_KEY = "prune_once"  # what config.json of a pruned-once checkpoint records
MLM_ARCHITECTURES = ("ForMaskedLM", "ForPreTraining")
RECOVERY_WARNING = 0.2  # warn when less than this share of the steps trains at the target sparsity


def _config(path: str, **hub: Any) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, local_files_only=Path(path).is_dir(), **hub)


def has_masked_lm_head(config: Any) -> bool:
    """Whether the checkpoint was saved with a masked-LM head (its config's architectures say so)."""
    return any(a.endswith(MLM_ARCHITECTURES) for a in config.architectures or [])


def choose_objective(requested: str, path: str, **hub: Any) -> str:
    head = has_masked_lm_head(_config(path, **hub))
    if requested == "mlm" and not head:
        raise RecipeError(f"{path} has no masked-LM head (its config's architectures name none ending in "
                          f"{' or '.join(MLM_ARCHITECTURES)}): use objective: hidden_states or auto",
                          key="pretrain.objective")
    if requested == "auto":
        return "mlm" if head else "hidden_states"
    return requested


def check_teacher(kind: str, student: str, teacher: str, section: PretrainSection, **hub: Any) -> None:
    """A separate teacher must produce what the loss compares: masked-LM logits over the same
    vocabulary, or hidden states of the same width (and depth, for ``hidden_layers: all``)."""
    if teacher == student:
        return
    ours, theirs = _config(student, **hub), _config(teacher, trust_remote_code=hub["trust_remote_code"])
    if kind == "mlm" and not has_masked_lm_head(theirs):
        raise RecipeError(f"{teacher} has no masked-LM head: its logits would come from a random layer; use a "
                          "teacher saved with its masked-LM head", key="pretrain.teacher")
    if kind == "hidden_states":
        problem = hidden_state_mismatch(ours, theirs, section.hidden_layers)
        if problem:
            raise RecipeError(f"{teacher}: {problem}", key="pretrain.teacher")
    elif ours.vocab_size != theirs.vocab_size:
        raise RecipeError(f"{teacher} has vocab_size {theirs.vocab_size}, the model {ours.vocab_size}: the mlm loss "
                          "compares them one to one", key="pretrain.teacher")


@dataclass
class _TextDistillation:
    """Shared by both objectives: texts tokenized once, a frozen teacher, held-out texts scored with
    the same loss (and, for the masked LM, the same masks) after every epoch."""

    tokenizer: Any
    teacher: Any
    texts: list[str]
    held_out: list[str]
    max_length: int
    section: PretrainSection
    _eval_batches: list[dict[str, Any]] = field(default_factory=list)

    def train_items(self) -> list[list[int]]:
        return self.tokenizer(self.texts, truncation=True, max_length=self.max_length)["input_ids"]

    def collate(self, items: list[list[int]]) -> dict[str, Any]:
        return dict(self.tokenizer.pad({"input_ids": items}, return_tensors="pt"))

    def evaluate(self, model: Any) -> dict[str, float]:
        import torch

        if not self._eval_batches:
            ids = self.tokenizer(self.held_out, truncation=True, max_length=self.max_length)["input_ids"]
            with torch.random.fork_rng():  # the same masks every epoch, without moving the training RNG
                torch.manual_seed(0)
                self._eval_batches = [self.collate(ids[i:i + 32]) for i in range(0, len(ids), 32)]
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            losses = [float(self.loss(model, to_device(batch, model.device))) for batch in self._eval_batches]
        model.train(was_training)
        return {"held_out_loss": round(sum(losses) / len(losses), 6)}


class MaskedLMDistillation(_TextDistillation):
    """alpha * MLM cross-entropy + (1 - alpha) * T^2 * KL(teacher || student), on the masked positions."""

    def describe(self) -> str:
        s = self.section
        return (f"masked-LM distillation on the masked positions ({s.mlm_probability:.0%} of tokens): "
                f"{s.alpha} * MLM CE + {1 - s.alpha} * T^2 * KL, T = {s.temperature}")

    @cached_property
    def _masking(self) -> Any:
        """Masks drawn with torch's generator (80% [MASK], 10% random, 10% kept), which resume restores."""
        from transformers import DataCollatorForLanguageModeling

        return DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=self.section.mlm_probability)

    def collate(self, items: list[list[int]]) -> dict[str, Any]:
        return dict(self._masking([{"input_ids": ids} for ids in items]))

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        from .train import distillation_loss, frozen_outputs

        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        masked = labels != -100
        logits = model(**inputs).logits
        if not masked.any():  # short texts can draw no mask: nothing to learn from this batch
            return logits.sum() * 0.0
        student = logits[masked]
        teacher = frozen_outputs(self.teacher, inputs).logits[masked].clone()
        return distillation_loss(student, teacher, labels[masked], self.section.temperature, self.section.alpha)


class HiddenStateDistillation(_TextDistillation):
    """Mean squared error between student and teacher hidden states on the real (unpadded) tokens."""

    def describe(self) -> str:
        which = "every layer's" if self.section.hidden_layers == "all" else "the last layer's"
        return f"hidden-state distillation: MSE on {which} hidden states"

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        from .train import frozen_outputs, hidden_state_mse

        every = self.section.hidden_layers == "all"
        student = model(**batch, output_hidden_states=every)
        teacher = frozen_outputs(self.teacher, {**batch, "output_hidden_states": every})
        pairs = [(o.hidden_states if every else [o.last_hidden_state]) for o in (student, teacher)]
        return hidden_state_mse(*pairs, batch["attention_mask"])


OBJECTIVES = {"mlm": MaskedLMDistillation, "hidden_states": HiddenStateDistillation}


def load_encoder(path: str, objective: str, **hub: Any) -> Any:
    """The checkpoint with its masked-LM head (``mlm``) or as a bare encoder (``hidden_states``)."""
    import transformers

    from .modeling import quiet_transformers

    quiet_transformers()
    auto = transformers.AutoModelForMaskedLM if objective == "mlm" else transformers.AutoModel
    return auto.from_pretrained(path, local_files_only=Path(path).is_dir(), **hub)


@dataclass
class PretrainResult:
    model_dir: Path
    report: dict[str, Any]


def prune_once(model: str, *, section: PretrainSection, out_dir: str | Path, state_dir: Path | None = None,
               fingerprint: str = "", world: World = SOLO, revision: str | None = None,
               trust_remote_code: bool = False) -> PretrainResult:
    """Prune a copy of ``model`` (hub id, local directory or ``offline:<name>``, at ``revision``) to the
    section's target while it distils from the dense model, and save the sparse checkpoint to
    ``out_dir`` (rank 0 of ``world`` saves; every rank trains).

    ``state_dir`` holds the checkpoint a resumed run continues from (same ``fingerprint``)."""
    from .checkpoint import resumable
    from .data.text import load_texts
    from .modeling import load_tokenizer
    from .prune import inc_config, prunable_matcher, sparsity_report
    from .registry import resolve_model
    from .rundir import staged_dir
    from .train import seed_everything, total_steps, train_loop

    path, code = resolve_model(model), {"trust_remote_code": trust_remote_code}
    hub = {**code, "revision": revision}
    teacher_path = resolve_model(section.teacher or model)
    kind = choose_objective(section.objective, path, **hub)
    check_teacher(kind, path, teacher_path, section, **hub)
    training = section.training
    seed_everything(training.seed)
    texts = load_texts(section)
    random.Random(training.seed).shuffle(texts)
    held = min(section.eval_samples, max(1, len(texts) // 10))
    held_out, texts = texts[:held], texts[held:]
    if not texts:
        raise DataError(f"pretrain: {held} text(s) are held out for the held-out loss and none is left to train "
                        "on; add text")
    steps = total_steps(len(texts), training, world.size)
    pruning = section.pruning.scheduled(steps)
    _check_schedule(pruning, steps)
    resume = resumable(state_dir, fingerprint)
    tokenizer = load_tokenizer(path, revision, trust_remote_code)
    student = load_encoder(str(state_dir) if resume else path, kind, **(code if resume else hub))
    teacher = load_encoder(teacher_path, kind, **(hub if teacher_path == path else code)).eval().requires_grad_(False)
    objective = OBJECTIVES[kind](tokenizer, teacher, texts, held_out, section.max_seq_length, section)
    log.info("prune once: %s; %d texts (%d held out), %d steps, %s %s to %.0f%% over steps %d-%d", objective.describe(),
             len(texts), len(held_out), steps, pruning.pruning_type, pruning.pattern, 100 * pruning.target_sparsity,
             pruning.start_step, pruning.end_step)
    dense = load_encoder(path, kind, **hub) if resume else student  # the held-out loss before any pruning
    before = world.broadcast(objective.evaluate(dense) if world.is_main else None)
    result = train_loop(student, tokenizer, objective, training, inc_config(pruning), state_dir, fingerprint, world)
    prunable = prunable_matcher(pruning)
    sparsity = sparsity_report(student, prunable)
    layers = [layer["zero_fraction"] for layer in sparsity["layers"] if layer["prunable"]]
    source = Path(model).name if Path(model).is_dir() else model  # a hub id; no local path in a shared checkpoint
    record = {"source": source, "pattern": pruning.pattern, "target_sparsity": pruning.target_sparsity,
              "sparsity": sparsity["overall"], "min_layer_sparsity": min(layers, default=0.0),
              "pruning_type": pruning.pruning_type, "objective": kind, "steps": result.steps}
    student.config.update({CONFIG_KEY: record})
    if world.is_main:
        with staged_dir(Path(out_dir)) as out:
            student.save_pretrained(out)
            tokenizer.save_pretrained(out)
    log.info("prune once: %.2f%% sparse (lowest layer %.2f%%), held-out loss %s -> %s; saved %s",
             100 * sparsity["overall"], 100 * record["min_layer_sparsity"], before["held_out_loss"],
             result.history[-1]["held_out_loss"], out_dir)
    report = {"objective": kind, "loss": objective.describe(), "texts": len(texts), "held_out": len(held_out),
              "schedule": pruning.model_dump(include={"pruning_type", "pattern", "pruning_scope", "target_sparsity",
                                                      "start_step", "end_step", "pruning_frequency",
                                                      "sparsity_decay_type"}),
              "held_out_loss_before": before["held_out_loss"], "checkpoint": record, "training": vars(result)}
    return PretrainResult(Path(out_dir), {"pretrain": report, "sparsity": sparsity})


def _check_schedule(pruning: Any, steps: int) -> None:
    """The target must be reached before the last step, with steps left to recover at it."""
    if pruning.end_step >= steps:
        raise RecipeError(f"end_step {pruning.end_step} is not before the run's last step ({steps} steps): the "
                          f"target would be reached with no training after it; lower it or train longer",
                          key="pretrain.pruning.end_step")
    if steps - pruning.end_step < RECOVERY_WARNING * steps:
        log.warning("prune once: only %d of %d steps train at the target sparsity (end_step %d); the reference "
                    "run prunes over the first half", steps - pruning.end_step, steps, pruning.end_step)


def pruned_once(path: str) -> dict[str, Any] | None:
    """What a pruned-once checkpoint's config.json records (None for any other checkpoint)."""
    config = Path(path) / "config.json"
    return json.loads(config.read_text()).get(CONFIG_KEY) if config.is_file() else None
