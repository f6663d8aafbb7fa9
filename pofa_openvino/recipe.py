"""Recipe schema v1: strict pydantic sections in INC's own vocabulary, loaded with line-precise errors.

A recipe is data, never code: safe YAML only, no evaluation, ``trust_remote_code`` off unless set.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import yaml_lines
from .errors import RecipeError
from .runtime.tasks import CLASSIFICATION, TaskName

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

PATTERN_HELP = "use unstructured, NxM (4x1, 1x4), N:M (2:4), channelx1, 1xchannel or mha (attention heads)"
_PATTERN = re.compile(r"^(unstructured|[1-9]\d*x[1-9]\d*|[1-9]\d*:[1-9]\d*|channelx1|1xchannel|mha)$")
STRUCTURED_PATTERNS = ("channelx1", "mha")  # whole FFN neurons (on the second FFN Linear) and attention heads
BUILTIN_DATASETS = ("builtin:sentiment",)


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, assignments are re-validated, numbers are
    finite (``.inf`` would train to NaN or never end), and ``true``/``false`` are not numbers. Types are
    strict, as INC and Hugging Face take them: ``"5"`` or ``3.0`` is not a step count, ``"0.9"`` not a
    sparsity, ``"yes"`` not a yes/no value; only an integer where a float is asked is taken as it is."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, strict=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied, validated as a loaded section is: pydantic's own copy skips
        validation, and a change made in Python (``--smoke``, an INC config) must not carry a recipe past
        a rule that ``validate`` checks. Unchanged sections inside are taken as they are (already valid)."""
        copied = super().model_copy(update=update, deep=deep)
        if not update:
            return copied
        checked = self.model_validate({name: getattr(copied, name) for name in copied.model_fields_set})
        for name, value in (copied.__pydantic_private__ or {}).items():
            setattr(checked, name, value)
        return checked

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_no_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(value).lower()} is a yes/no value; this key takes a number or a name")
        return value


class KeyedError(ValueError):
    """A model validator's error that belongs to one key below the model (``end_step``,
    ``pruning_configs[1].end_step``): the message then points at that key's line, not the section's."""

    def __init__(self, message: str, *key: str | int):
        super().__init__(message)
        self.key = key


def _admits_bool(annotation: Any) -> bool:
    return annotation is bool or annotation is Any or any(_admits_bool(a) for a in getattr(annotation, "__args__", ()))


class ModelSection(Section):
    """What to start from: a hub id, a local HF directory, or ``offline:<name>`` (see registry)."""

    name_or_path: str
    revision: str | None = None
    trust_remote_code: bool = False


class DataSection(Section):
    """Where examples come from. ``dataset`` is a hub name (``glue/sst2``, ``squad``) or
    ``builtin:sentiment``; local files go in ``train_file`` / ``validation_file`` (csv, tsv, jsonl for
    classification; SQuAD JSON for question answering). ``doc_stride``, ``n_best_size`` and
    ``max_answer_length`` are question answering's, named as in Hugging Face's run_qa."""

    dataset: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    text_columns: list[str] | None = Field(default=None, min_length=1, max_length=2)
    label_column: str = "label"
    labels: list[str] | None = Field(default=None, min_length=2)
    max_seq_length: int = Field(default=128, ge=8, le=4096)
    max_train_samples: int | None = Field(default=None, gt=0)
    max_eval_samples: int | None = Field(default=None, gt=0)
    doc_stride: int = Field(default=128, ge=1)
    n_best_size: int = Field(default=20, ge=1)
    max_answer_length: int = Field(default=30, ge=1)

    @field_validator("labels")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        repeated = sorted({name for name in value or [] if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once: each label names one class")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if self.dataset is None and not (self.train_file and self.validation_file):
            raise ValueError("give `dataset` (a hub name or builtin:sentiment) or both "
                             "`train_file` and `validation_file`")
        if self.dataset is not None and (self.train_file or self.validation_file):
            raise ValueError("give either `dataset` or local files, not both")
        return self


# INC's shapes of the sparsity between start_step and end_step (t = share of the window done, s_f the target):
# exp 1-(1-s_f)^t, cos s_f*(1-cos(t*pi/2)), cube s_f*t^3, linear s_f*t; and ours, zhu_gupta s_f*(1-(1-t)^3),
# the front-loaded cubic of Zhu & Gupta 2017 that PruneOFA and oBERT prune with (prune.py gives it to INC).
DecayType = Literal["exp", "cos", "cube", "linear", "zhu_gupta"]
BACK_LOADED = ("cube", "cos")  # most weights go in the last part of the window (cube: half the target at t=0.79)
BACK_LOADED_RECOVERY = 0.5  # warn when a back-loaded shape leaves fewer steps than this share of the run after it


def back_loaded_warning(decay: str, pruning_type: str, start_step: int, end_step: int, steps: int) -> str | None:
    """Why a back-loaded schedule (``cube``, ``cos``) is nearly one-shot in a run of ``steps`` optimizer
    steps: fewer than ``BACK_LOADED_RECOVERY`` of them train after ``end_step``. None when it is not."""
    if decay not in BACK_LOADED or pruning_type == "pattern_lock" or end_step <= start_step:
        return None
    if steps - end_step >= BACK_LOADED_RECOVERY * steps:
        return None
    return (f"{decay} is back-loaded (it removes most weights just before end_step {end_step}) "
            f"and leaves {max(0, steps - end_step)} of {steps} steps to recover, under "
            f"{BACK_LOADED_RECOVERY:.0%}: use zhu_gupta or exp (front-loaded), or an earlier end_step")


class PrunerGroup(Section):
    """One entry of INC's ``pruning_configs``: settings for the layers it names."""

    op_names: list[str] = Field(default_factory=list)
    excluded_op_names: list[str] = Field(default_factory=list)
    target_sparsity: float | None = Field(default=None, ge=0.0, lt=1.0)
    pruning_type: str | None = None
    pattern: str | None = None
    pruning_scope: Literal["global", "local"] | None = None
    start_step: int | None = Field(default=None, ge=0)
    end_step: int | None = Field(default=None, ge=0)
    pruning_frequency: int | None = Field(default=None, ge=1)
    min_sparsity_ratio_per_op: float | None = Field(default=None, ge=0.0, le=1.0)
    max_sparsity_ratio_per_op: float | None = Field(default=None, ge=0.0, le=1.0)
    sparsity_decay_type: DecayType | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None and not _PATTERN.match(value):
            raise ValueError(f"{value!r} is not a pattern; {PATTERN_HELP}")
        return value

    @field_validator("pruning_type")
    @classmethod
    def _pruning_type(cls, value: str | None) -> str | None:
        if value is not None and value not in PRUNING_TYPES:
            raise ValueError(f"{value!r} is not a pruning_type; use {', '.join(PRUNING_TYPES)}")
        return value


# Kept FFN neurons are rounded up to this multiple (benchmarks/structured_speed.py measured the INT8 kernels).
SLIM_MULTIPLE = 32

PRUNING_TYPES = ("snip_momentum", "magnitude", "snip", "pattern_lock", "magnitude_progressive",
                 "snip_progressive", "snip_momentum_progressive")


class PruningSection(PrunerGroup):
    """INC ``WeightPruningConfig``: the global values, plus optional per-layer ``pruning_configs``.

    Defaults are INC's, except ``pruning_op_types`` (Linear only: transformers have no Conv to
    prune) and ``excluded_op_names`` (the task head stays dense unless you list it)."""

    target_sparsity: float = Field(default=0.9, ge=0.0, lt=1.0)
    pruning_type: str = "snip_momentum"
    pattern: str = "4x1"
    pruning_scope: Literal["global", "local"] = "global"
    start_step: int = Field(default=0, ge=0)
    end_step: int = Field(default=0, ge=0)
    pruning_frequency: int = Field(default=1, ge=1)
    min_sparsity_ratio_per_op: float = Field(default=0.0, ge=0.0, le=1.0)
    max_sparsity_ratio_per_op: float = Field(default=0.98, ge=0.0, le=1.0)
    sparsity_decay_type: DecayType = "exp"
    excluded_op_names: list[str] = Field(
        default_factory=lambda: ["classifier", "qa_outputs", "pre_classifier", "pooler"])
    pruning_op_types: list[Literal["Linear", "Conv"]] = Field(default_factory=lambda: ["Linear"])
    pruning_configs: list[PrunerGroup] = Field(default_factory=list)
    ffn2_sparsity: float | None = Field(default=None, gt=0.0, lt=1.0)
    mha_sparsity: float | None = Field(default=None, gt=0.0, lt=1.0)
    slim_multiple: int = Field(default=SLIM_MULTIPLE, ge=1, le=1024)

    def structured_keys(self) -> list[str]:
        """The keys asking for whole heads or neurons; they need an architecture whose layers are known."""
        keys = [name for name in ("ffn2_sparsity", "mha_sparsity") if getattr(self, name) is not None]
        keys += [f"pruning_configs[{i}].pattern" for i, group in enumerate(self.pruning_configs)
                 if group.pattern == "mha"]
        return keys + (["pattern"] if self.pattern == "mha" and not self.pruning_configs else [])

    @property
    def structured(self) -> bool:
        """Whether pruning removes whole heads or FFN neurons, so the trained model is slimmed."""
        patterns = [group.pattern for group in self.pruning_configs] or [self.pattern]
        return bool(self.structured_keys()) or any(p in STRUCTURED_PATTERNS for p in patterns)

    def groups(self) -> list[tuple[str, PrunerGroup]]:
        """Each group's key prefix and its settings, the section's own values filling what a group leaves out."""
        if not self.pruning_configs:
            return [("", self)]
        return [(f"pruning_configs[{i}].", self.model_copy(update={**group.model_dump(exclude_none=True),
                                                                    "pruning_configs": []}))
                for i, group in enumerate(self.pruning_configs)]

    def back_loaded(self, steps: int) -> list[tuple[str, str]]:
        """:func:`back_loaded_warning` for each group (its key, the message), in a run of ``steps`` steps."""
        found = ((key, back_loaded_warning(g.sparsity_decay_type, g.pruning_type, g.start_step, g.end_step, steps))
                 for key, g in self.groups())
        return [(f"{key}sparsity_decay_type", message) for key, message in found if message]

    @model_validator(mode="after")
    def _steps(self) -> PruningSection:
        for where, group in [((), self), *((("pruning_configs", i), g) for i, g in enumerate(self.pruning_configs))]:
            start = self.start_step if group.start_step is None else group.start_step
            end = self.end_step if group.end_step is None else group.end_step
            if end < start:
                raise KeyedError(f"end_step ({end}) is before start_step ({start})", *_step_key(where, group, self))
            if (group.pruning_type or self.pruning_type) == "pattern_lock" and end != start:
                raise KeyedError("pattern_lock locks the checkpoint's zeros once, at start_step: set end_step equal "
                                 f"to start_step (got {start} and {end})", *_step_key(where, group, self))
        return self


def _step_key(where: tuple[str | int, ...], group: PrunerGroup, section: PrunerGroup) -> tuple[str | int, ...]:
    """The step key to blame: the group's ``end_step`` or else its ``start_step`` when the file sets it, else
    the section's own (a group inherits the steps it leaves out)."""
    for owner, path in ((group, where), (section, ())):
        for name in ("end_step", "start_step"):
            if name in owner.model_fields_set:
                return (*path, name)
    return ("end_step",)


# Hugging Face's names (SchedulerType) and ours: linear_after_pruning holds the peak until pruning ends.
LR_SCHEDULES = ("linear", "constant", "constant_with_warmup", "cosine", "linear_after_pruning")
HOLDS_WHILE_PRUNING = "linear_after_pruning"


class TrainingSection(Section):
    """Training loop settings, named as Hugging Face ``TrainingArguments`` names them. Under ``torchrun``
    or ``accelerate launch`` each process takes ``per_device_train_batch_size`` examples per micro-batch.
    ``device: auto`` trains on this rank's GPU when CUDA is available; ``mixed_precision: auto`` is bf16
    on GPUs that support it and off on the CPU. A resumable checkpoint is written after every epoch and,
    with ``save_steps``, every that many optimizer steps (long pre-training runs have long epochs).

    The learning rate follows ``lr_scheduler_type`` (Hugging Face's schedules, from transformers'
    ``get_scheduler``) after a linear warmup of ``warmup_steps``, or else ``warmup_ratio`` of the steps
    (rounded down; Hugging Face rounds up). ``linear_after_pruning`` is ours (PruneOFA's): warmup, the
    peak rate held until the last pruning ``end_step``, then linear decay to zero."""

    num_train_epochs: float = Field(default=3.0, gt=0.0)
    max_steps: int = Field(default=-1, ge=-1)
    per_device_train_batch_size: int = Field(default=32, ge=1)
    per_device_eval_batch_size: int = Field(default=64, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    warmup_steps: int = Field(default=0, ge=0)  # > 0 overrides warmup_ratio
    lr_scheduler_type: Literal[LR_SCHEDULES] = "linear"
    adam_beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    adam_epsilon: float = Field(default=1e-8, gt=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)  # what numpy and torch accept
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 steps would train nothing; use -1 (epochs decide) or a positive count")
        return value

    @model_validator(mode="after")
    def _constant_has_no_warmup(self) -> TrainingSection:
        if self.lr_scheduler_type == "constant" and (self.warmup_steps or self.warmup_ratio):
            raise KeyedError("constant has no warmup (as in Hugging Face): use constant_with_warmup, or remove "
                             "warmup_steps and warmup_ratio", "lr_scheduler_type")
        return self


TEACHER_AUTO = "auto"


class HiddenStates(Section):
    """Hidden-state distillation: ``weight`` * MSE between the student's and the teacher's hidden states
    on the real tokens, as INC's pruning examples distil. ``layers``: ``last`` (the encoder's output),
    ``all`` (the embeddings and every layer's output), or indices into Hugging Face's ``hidden_states``
    (0 the embeddings, i the output of layer i)."""

    layers: Literal["last", "all"] | list[Annotated[int, Field(ge=0)]] = "last"
    weight: float = Field(default=1.0, gt=0.0)

    @field_validator("layers")
    @classmethod
    def _distinct(cls, value: str | list[int]) -> str | list[int]:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError(f"{value} is not a list of distinct layer indices; use last, all or e.g. [4, 6]")
        return value


class DistillationSection(Section):
    """Logit distillation from a dense teacher: alpha * CE + (1 - alpha) * T^2 * KL (``alpha: 0`` is pure
    KD: the labels are not used), plus ``hidden_states`` distillation when given. ``teacher: auto``
    fine-tunes the recipe's dense model on the recipe's data first (the ``teacher`` stage, into
    ``teacher/``, with ``teacher_training`` or else the ``training`` section), then starts the student
    from the teacher's weights and distils from it."""

    teacher: str
    temperature: float = Field(default=2.0, gt=0.0)
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    hidden_states: HiddenStates | None = None
    teacher_training: TrainingSection | None = None

    @property
    def trains_teacher(self) -> bool:
        return self.teacher == TEACHER_AUTO

    @model_validator(mode="after")
    def _teacher_training_needs_auto(self) -> DistillationSection:
        if self.teacher_training is not None and not self.trains_teacher:
            raise KeyedError("teacher_training is the budget of the teacher this run fine-tunes: it needs "
                             f"`teacher: {TEACHER_AUTO}` (a given teacher is used as it is)", "teacher_training")
        return self


class ReportSection(Section):
    """``max_gap``: how many points (of the task metric, in %) a pruned model may lose to the dense
    reference measured in the same run before the run says so and suggests what to change."""

    max_gap: float = Field(default=2.0, ge=0.0)


# Masked-LM heads (BERT, DistilBERT, RoBERTa) and the pooler stay dense: the LM decoder is tied to the embeddings.
PRETRAIN_DENSE = ("pooler", "cls.predictions", "vocab_transform", "vocab_projector", "lm_head")


class PretrainPruning(PruningSection):
    """The prune-once schedule: magnitude, unstructured, every layer to the target by default. Steps
    left unset prune over the first half of training (50 mask updates) and train the rest at the
    target, as the PruneOFA reference run does."""

    pruning_type: str = "magnitude"
    pattern: str = "unstructured"
    pruning_scope: Literal["global", "local"] = "local"
    excluded_op_names: list[str] = Field(default_factory=lambda: list(PRETRAIN_DENSE))
    start_step: int | None = Field(default=None, ge=0)
    end_step: int | None = Field(default=None, ge=0)
    pruning_frequency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _steps(self) -> PretrainPruning:
        if self.pruning_type == "pattern_lock":
            raise ValueError("pattern_lock keeps zeros that exist; prune once creates them: use magnitude, "
                             "snip_momentum or another criterion")
        if self.structured_keys():
            raise ValueError("prune once keeps the model's shape for every task; remove heads and neurons in the "
                             "task recipe's `pruning` section")
        if self.start_step is not None and self.end_step is not None and self.end_step < self.start_step:
            raise KeyedError(f"end_step ({self.end_step}) is before start_step ({self.start_step})", "end_step")
        return self

    def scheduled(self, steps: int) -> PruningSection:
        """The INC section with the unset steps filled in for a run of ``steps`` optimizer steps."""
        start = self.start_step if self.start_step is not None else 0
        end = self.end_step if self.end_step is not None else max(start, steps // 2)
        frequency = self.pruning_frequency or max(1, (end - start) // 50)
        values = self.model_dump(exclude={"pruning_configs"})
        return PruningSection.model_validate({**values, "start_step": start, "end_step": end,
                                              "pruning_frequency": frequency,
                                              "pruning_configs": self.pruning_configs})


class PretrainSection(Section):
    """Prune once (Zafrir et al. 2021): a copy of the model is pruned with INC while it distils from the
    frozen dense model (or ``teacher``) on unlabeled text, into ``pretrained/``. ``objective: auto``
    distils masked-LM logits (0.5 * MLM CE + 0.5 * T^2 * KL) when the checkpoint has a masked-LM head,
    else hidden states (MSE on the last layer's, or on ``all`` layers')."""

    text_files: list[str] = Field(default_factory=list)
    dataset: str | None = None
    dataset_config: str | None = None
    text_column: str = "text"
    max_seq_length: int = Field(default=128, ge=8, le=4096)
    max_samples: int | None = Field(default=None, gt=0)
    eval_samples: int = Field(default=256, ge=1)
    objective: Literal["auto", "mlm", "hidden_states"] = "auto"
    hidden_layers: Literal["last", "all"] = "last"
    mlm_probability: float = Field(default=0.15, gt=0.0, lt=1.0)
    teacher: str | None = None
    temperature: float = Field(default=2.0, gt=0.0)
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    pruning: PretrainPruning = Field(default_factory=PretrainPruning)
    training: TrainingSection = Field(default_factory=lambda: TrainingSection())

    @model_validator(mode="after")
    def _has_text(self) -> PretrainSection:
        if not self.text_files and not self.dataset:
            raise ValueError("give `text_files` (local .txt/.csv/.tsv/.jsonl/SQuAD .json) or a hub `dataset`")
        return self


class OpSetting(Section):
    dtype: list[Literal["fp32", "int8"]] = Field(min_length=1)


class OpOverride(Section):
    """INC ``op_name_dict`` / ``op_type_dict`` entry, e.g. ``{activation: {dtype: [fp32]}}``."""

    activation: OpSetting | None = None
    weight: OpSetting | None = None


class SmoothQuantArgs(Section):
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)


class QuantRecipes(Section):
    """INC ``recipes``: only SmoothQuant applies to these models."""

    smooth_quant: bool = False
    smooth_quant_args: SmoothQuantArgs = Field(default_factory=SmoothQuantArgs)


class AccuracyCriterion(Section):
    """INC ``AccuracyCriterion``: the metric may drop at most ``tolerable_loss``."""

    criterion: Literal["relative", "absolute"] = "relative"
    tolerable_loss: float = Field(default=0.01, ge=0.0, lt=1.0)


# QAT's own budget where ``quantization.training`` leaves a key out: a short phase at a low rate (Intel's
# reproduction: 3 epochs at 1e-5; one epoch here, so a run's QAT stays a fraction of its fine-tuning).
QAT_BUDGET = {"learning_rate": 1e-5, "num_train_epochs": 1.0, "max_steps": -1, "warmup_ratio": 0.0,
              "warmup_steps": 0, "lr_scheduler_type": "linear", "save_steps": None}


class QuantizationSection(Section):
    """INC ``PostTrainingQuantConfig`` / ``QuantizationAwareTrainingConfig`` vocabulary. ``training``:
    the budget of quantization-aware training (``approach: qat``); see :meth:`Recipe.qat_training`."""

    approach: Literal["static", "weight_only", "qat", "none"] = "static"
    calibration_sampling_size: int = Field(default=300, ge=1)
    op_name_dict: dict[str, OpOverride] = Field(default_factory=dict)
    op_type_dict: dict[str, OpOverride] = Field(default_factory=dict)
    recipes: QuantRecipes = Field(default_factory=QuantRecipes)
    accuracy_criterion: AccuracyCriterion | None = None
    training: TrainingSection | None = None

    @model_validator(mode="after")
    def _fits_the_approach(self) -> QuantizationSection:
        if self.training is not None and self.approach != "qat":
            raise KeyedError(f"training is the budget of quantization-aware training: it needs `approach: qat` "
                             f"(approach {self.approach} does not train)", "training")
        if self.approach == "qat" and (self.op_name_dict or self.op_type_dict):
            raise KeyedError("op_name_dict / op_type_dict apply to post-training INT8 (static, weight_only); "
                             "qat quantizes every Linear", "approach")
        if self.accuracy_criterion is not None and self.approach != "static":
            raise KeyedError("accuracy_criterion applies to approach: static (NNCF reverts layers to float until "
                             "the metric holds)", "accuracy_criterion")
        return self


class ExportSection(Section):
    """OpenVINO IR export; the sparse rate is written to ``runtime_config.json`` beside the IR."""

    sparse_weights_decompression_rate: Literal["auto", "off"] | float = "auto"

    @field_validator("sparse_weights_decompression_rate")
    @classmethod
    def _rate(cls, value: str | float) -> str | float:
        if isinstance(value, float) and not 0.5 <= value <= 1.0:
            raise ValueError(f"{value} is out of range; use auto, off, or a rate in [0.5, 1.0] "
                             "(OpenVINO's CPU plugin documents rates above 0.5)")
        return value


class BenchmarkSection(Section):
    """Latency at batch ``batch_size`` for every sequence length, throughput, memory and size of every
    variant the run produced; ``duration_s`` per variant and length; ``threads`` default to all cores.
    ``texts``: real text to measure as well (``evaluation``: the recipe's evaluation split; a .txt, .csv,
    .tsv or .jsonl file with a ``text`` column; null: fixed lengths only)."""

    sequence_lengths: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 128, 384], min_length=1)
    batch_size: int = Field(default=1, ge=1)
    duration_s: float = Field(default=10.0, gt=0.0)
    threads: int | None = Field(default=None, ge=1)
    texts: str | None = "evaluation"


class PackageSection(Section):
    """The edge bundle: ``xeon-amx`` keeps the sparse rate, ``xeon`` and ``edge`` run dense; INT8
    embeddings are kept only if the task metric drops by at most ``max_accuracy_drop``."""

    target: Literal["xeon-amx", "xeon", "edge"] = "xeon-amx"
    archive: bool = False
    compress_embeddings: bool = True
    max_accuracy_drop: float = Field(default=0.01, ge=0.0)


TASK_SECTIONS = ("pruning", "training", "distillation", "quantization", "export", "benchmark", "package")


class Recipe(Section):
    """A whole recipe, as :func:`load_recipe` returns it. Sections left out are stages that do not run."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    task: TaskName = CLASSIFICATION.name
    model: ModelSection
    pretrain: PretrainSection | None = None
    data: DataSection | None = None
    pruning: PruningSection | None = None
    training: TrainingSection | None = None
    distillation: DistillationSection | None = None
    quantization: QuantizationSection | None = None
    export: ExportSection | None = None
    benchmark: BenchmarkSection | None = None
    package: PackageSection | None = None
    report: ReportSection | None = None

    @model_validator(mode="after")
    def _needs_training(self) -> Recipe:
        for section in ("pruning", "distillation"):
            if getattr(self, section) is not None and self.training is None:
                raise ValueError(f"`{section}` happens during fine-tuning: add a `training` section")
        if self.quantization is not None and self.quantization.approach == "qat" and self.training is None:
            raise KeyedError("qat fine-tunes the fake-quantized model with the `training` section: add one",
                             "quantization", "approach")
        unpruned = {"training": "this recipe has no `pruning` section" if self.pruning is None else None,
                    "distillation.teacher_training": "the teacher is not pruned",
                    "quantization.training": "quantization-aware training prunes nothing (its zeros are locked)"}
        for key, why in unpruned.items():
            section = self._section(key)
            if why and section is not None and section.lr_scheduler_type == HOLDS_WHILE_PRUNING:
                raise KeyedError(f"{HOLDS_WHILE_PRUNING} holds the peak rate until pruning ends, and {why}: use "
                                 "linear, cosine or constant", *key.split("."), "lr_scheduler_type")
        if self.data is None and (self.pretrain is None or any(getattr(self, s) is not None for s in TASK_SECTIONS)):
            raise ValueError("`data` is missing: the task stages need it (a prune-once recipe without a task "
                             "has only `model` and `pretrain`)")
        return self

    @model_validator(mode="after")
    def _package_has_an_ir(self) -> Recipe:
        if self.package is not None and self.quantization is None and self.export is None:
            raise KeyedError("the package bundles the OpenVINO IR: add a `quantization` (or `export`) section",
                             "package")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Recipe:
        """A validated copy (see :meth:`Section.model_copy`); a rule it breaks is a :class:`RecipeError` at the
        line of the recipe's file that the rule names."""
        try:
            return super().model_copy(update=update, deep=deep)
        except ValidationError as exc:
            raise _recipe_error(exc, self.source, self._lines, {}) from None

    def _section(self, key: str) -> Any:
        """The section at a dotted key (``quantization.training``), or None where a part is absent."""
        node: Any = self
        for part in key.split("."):
            node = getattr(node, part, None) if node is not None else None
        return node

    def qat_training(self) -> TrainingSection:
        """What quantization-aware training runs: ``quantization.training``'s keys; the budget keys it leaves
        out from ``QAT_BUDGET`` (one epoch at 1e-5, no warmup, linear decay); the rest (batch size,
        accumulation, device, precision, seed, Adam, weight decay) as in ``training``."""
        own = self.quantization.training if self.quantization is not None else None
        base = (self.training or TrainingSection()).model_dump()
        return TrainingSection.model_validate({**base, **QAT_BUDGET,
                                               **(own.model_dump(exclude_unset=True) if own else {})})

    _source: str = PrivateAttr(default="<dict>")
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    def error(self, key: str, message: str) -> RecipeError:
        """A :class:`RecipeError` at ``key``'s line, for rules only a stage can check (it needs the model)."""
        return RecipeError(message, source=self.source, line=self._lines.get(key), key=key)

    @property
    def source(self) -> str:
        """Where the recipe came from (its file, or ``<dict>``), for messages and the manifest."""
        return self._source

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        """Stable hash of the resolved recipe (what the manifest records)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading


def load_recipe(source: str | Path | dict[str, Any], *, overrides: list[str] | None = None) -> Recipe:
    """Load and validate a recipe from a YAML file or a dict; ``overrides`` are ``key.path=value``.

    Raises :class:`RecipeError` whose message is ``file:line: key: what is wrong; valid choices``.
    """
    if isinstance(source, dict):
        data, lines, name, base_dir = copy.deepcopy(source), {}, "<dict>", Path.cwd()
    else:
        path = Path(source)
        name = str(source)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RecipeError(f"cannot read recipe: {exc.strerror}", source=name) from None
        data, lines = yaml_lines.parse(yaml_lines.decode(raw, name), name)
        base_dir = path.resolve().parent
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a mapping of sections (name, model, data, ...)", source=name, line=1)
    for section, field in Recipe.model_fields.items():  # `training:` with nothing under it: its defaults
        if data.get(section, {}) is None and _model_of(field.annotation) is not None:
            data[section] = {}
    distillation = data.get("distillation")
    if isinstance(distillation, dict) and "hidden_states" in distillation and distillation["hidden_states"] is None:
        distillation["hidden_states"] = {}  # `hidden_states:` with nothing under it turns it on with its defaults
    origins = {key: name for key in lines}
    for item in overrides or []:
        key = _apply_override(data, item)
        origins[key] = f"--set {item}"
    recipe = _validate(data, name, lines, origins)
    recipe._source = name
    recipe._lines = dict(lines)
    _resolve_paths(recipe, base_dir, lines, origins)
    for key, message in _schedule_warnings(recipe):
        source, line = _where(key, name, lines, origins)
        log.warning("%s%s: %s: %s", source, f":{line}" if line else "", key, message)
    if recipe.model.trust_remote_code:
        log.warning("%s: model.trust_remote_code is true: the model repository's Python code will run", name)
    return recipe


def _schedule_warnings(recipe: Recipe) -> list[tuple[str, str]]:
    """Back-loaded pruning schedules that leave little recovery, where ``max_steps`` fixes the run's length
    (otherwise the training loop, which knows it, warns)."""
    runs = [("pruning", recipe.pruning, recipe.training)]
    if recipe.pretrain is not None and recipe.pretrain.training.max_steps > 0:
        steps = recipe.pretrain.training.max_steps
        runs.append(("pretrain.pruning", recipe.pretrain.pruning.scheduled(steps), recipe.pretrain.training))
    return [(f"{prefix}.{key}", message) for prefix, section, training in runs
            if section is not None and training is not None and training.max_steps > 0
            for key, message in section.back_loaded(training.max_steps)]


def _apply_override(data: dict[str, Any], item: str) -> str:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"{item!r} is not key.path=value", source="--set")
    try:
        value = yaml_lines.load_value(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise RecipeError(f"{key!r} has an empty part; write section.key=value", source=f"--set {item}")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{part!r} is not a section", source=f"--set {item}", key=key)
        node = child
    node[parts[-1]] = value
    return key


def _validate(data: dict[str, Any], name: str, lines: yaml_lines.LineMap, origins: dict[str, str]) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise _recipe_error(exc, name, lines, origins) from None


def _recipe_error(exc: ValidationError, name: str, lines: yaml_lines.LineMap, origins: dict[str, str]
                  ) -> RecipeError:
    """The one line for a failed validation: the file (or ``--set``), the line and the key it names."""
    error = _deepest_branch(exc.errors(include_url=False))
    loc = tuple(part for part in error["loc"] if not _UNION_BRANCH.match(str(part)))
    loc += getattr(error.get("ctx", {}).get("error"), "key", ())  # a section's rule about one of its keys
    key = yaml_lines.dotted(loc)
    source, line = _where(key, name, lines, origins)
    return RecipeError(_describe(error, loc), source=source, line=line, key=key or "(top level)")


# pydantic names the branch of a union that failed (``literal['auto','off']``, ``float``): not a key.
_UNION_BRANCH = re.compile(r"^(literal|list|dict|function-\w+|tagged-union|union|chain|lax-or-strict)\[.*\]$|"
                           r"^(float|int|str|bool|list|dict|none)$")


def _deepest_branch(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The first error, or where the value failed every branch of a union, the branch that got furthest
    into it (``layers: [-1]`` is a list with a bad item, not a misspelt ``last``)."""
    first = errors[0]
    branch = next((i for i, part in enumerate(first["loc"]) if _UNION_BRANCH.match(str(part))), None)
    if branch is None:
        return first
    same = [e for e in errors if e["loc"][:branch] == first["loc"][:branch] and len(e["loc"]) > branch]
    return max(same, key=lambda e: len(e["loc"]))  # the first of the deepest


def _where(key: str, name: str, lines: yaml_lines.LineMap, origins: dict[str, str]) -> tuple[str, int | None]:
    """The file and line of ``key``, or of its nearest parent that the file spells out. Each step drops
    the last part of the key, so the walk always ends."""
    probe = key
    while probe:
        if probe in origins and origins[probe] != name:
            return origins[probe], None
        if probe in lines:
            return name, lines[probe]
        below = [origin for k, origin in origins.items() if origin != name and k.startswith(probe + ".")]
        if below:  # a key the file does not have, made by --set (nothere.x=1)
            return below[0], None
        parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", probe)
        probe = parent if parent != probe else probe.rpartition(".")[0]
    return name, None


def _describe(error: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        choices = sorted(_fields_at(loc[:-1]))
        near = difflib.get_close_matches(str(loc[-1]), choices, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        return f"unknown key; {hint}valid keys: {', '.join(choices)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = error["ctx"]["expected"].replace("'", "")
        return f"{value!r} is not allowed; use {expected}"
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return message
    if kind == "list_type" and isinstance(value, str | int | float):
        return f"{value!r} is one value; this key takes a list: write [{value}]"
    if kind in _TYPE_NAMES and isinstance(value, str) and _unquoted_fits(value, kind):  # types are strict
        return f"{value!r} is text (in quotes); this key takes {_TYPE_NAMES[kind]}: write it without quotes"
    if kind == "int_type" and isinstance(value, float):
        return f"{value!r} is not a whole number; this key takes an integer (write {value:.0f} if that is meant)" \
            if value.is_integer() else f"{value!r} is not a whole number; this key takes an integer"
    return f"{value!r}: {message[0].lower()}{message[1:]}" if not isinstance(value, dict) else message


_TYPE_NAMES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}


def _unquoted_fits(text: str, kind: str) -> bool:
    """Whether ``text`` without its quotes would be a value of the type ``kind`` names."""
    try:
        value = yaml_lines.load_value(text)
    except yaml.YAMLError:
        return False
    if kind == "bool_type":
        return isinstance(value, bool)
    return isinstance(value, int if kind == "int_type" else int | float) and not isinstance(value, bool)


def _fields_at(loc: tuple[Any, ...]) -> set[str]:
    """Field names valid at ``loc`` (a path into the Recipe model), for 'did you mean' hints."""
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field else None
    return set(model.model_fields) if model else set()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found:
            return found
    return None


def _resolve_paths(recipe: Recipe, base: Path, lines: yaml_lines.LineMap, origins: dict[str, str]) -> None:
    """Make local paths absolute (relative to the recipe file) and fail early on missing ones."""

    def fail(key: str, message: str) -> None:
        source, line = _where(key, recipe.source, lines, origins)
        raise RecipeError(message, source=source, line=line, key=key)

    def local_file(key: str, value: str) -> str:
        path = base / Path(value).expanduser()
        if path.is_dir():
            fail(key, f"{path} is a directory; give the file itself")
        if not path.is_file():
            fail(key, f"file not found: {path}")
        return str(path.resolve())

    for key in ("train_file", "validation_file"):
        value = getattr(recipe.data, key, None)
        if value is not None:
            setattr(recipe.data, key, local_file(f"data.{key}", value))
    texts = recipe.benchmark.texts if recipe.benchmark else None
    if texts not in (None, "evaluation"):
        recipe.benchmark.texts = local_file("benchmark.texts", texts)
    if recipe.pretrain is not None:
        recipe.pretrain.text_files = [local_file(f"pretrain.text_files[{i}]", value)
                                      for i, value in enumerate(recipe.pretrain.text_files)]
    dataset = recipe.data.dataset if recipe.data else None
    if dataset is not None and dataset.startswith("builtin:") and dataset not in BUILTIN_DATASETS:
        fail("data.dataset", f"{dataset!r} is not a built-in dataset; use {', '.join(BUILTIN_DATASETS)}")
    for key, section in (("model.name_or_path", recipe.model), ("distillation.teacher", recipe.distillation),
                         ("pretrain.teacher", recipe.pretrain)):
        field = key.split(".")[1]
        trained_here = section is recipe.distillation and section is not None and section.trains_teacher
        if section is None or getattr(section, field) is None or trained_here:
            continue
        resolved, problem = _resolve_model_ref(getattr(section, field), base)
        if problem:
            fail(key, problem)
        setattr(section, field, resolved)


def _resolve_model_ref(value: str, base: Path) -> tuple[str, str | None]:
    """A model reference is ``offline:<name>``, a local directory, or a hub id (``org/name``)."""
    from .registry import OFFLINE_MODELS

    if value.startswith("offline:"):
        if value[len("offline:"):] not in OFFLINE_MODELS:
            return value, f"{value!r} is not an offline model; use " + ", ".join(
                f"offline:{n}" for n in OFFLINE_MODELS)
        return value, None
    local = base / Path(value).expanduser()
    if value.startswith((".", "/", "~")) or local.is_dir():
        if not (local / "config.json").is_file():
            return value, f"no Hugging Face model directory (config.json) at {local}"
        return str(local.resolve()), None
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", value):
        return value, None
    return value, f"{value!r} is neither a local model directory nor a hub id like org/name"
