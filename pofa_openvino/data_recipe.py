"""``init --train FILE --validation FILE``: a commented recipe sized to a user's own classification
files. The files are read as a run would read them (so a bad row fails here, not an hour in); the
recipe gets their columns and labels, ``max_seq_length`` from their measured token lengths, a teacher
trained in the run, and a pruning schedule counted in steps of this data."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from .errors import DataError, UsageError
from .runtime.tasks import CLASSIFICATION

DEFAULT_MODEL = "offline:all-MiniLM-L6-v2"
BATCH = 32
EPOCHS = 3  # the student's budget: recovery at 90% needs more than one epoch (issue 19's measurements)
TEACHER_EPOCHS = 2
LENGTH_PERCENTILE = 99
LENGTH_STEP = 16
LENGTH_SAMPLE = 5000  # rows tokenized to measure lengths


@dataclass(frozen=True)
class Survey:
    """What the files hold, as the recipe needs it."""

    train_rows: int
    validation_rows: int
    text_columns: tuple[str, ...]
    label_column: str
    labels: list[str]
    smallest_class: int
    length_percentile: int
    max_seq_length: int


def survey(train: Path, validation: Path, text_columns: list[str] | None, label_column: str, tokenizer: Any,
           max_positions: int = 512) -> Survey:
    """Read both files as the run will (every row checked) and measure the token lengths."""
    from .data.classification import load_classification, read_rows
    from .recipe import DataSection

    columns = text_columns or _text_columns(read_rows(train)[0], label_column, train)
    data = load_classification(DataSection(train_file=str(train), validation_file=str(validation),
                                           text_columns=columns, label_column=label_column))
    counts = np.bincount([e.label for e in data.train], minlength=len(data.labels))
    sample = data.train[:: max(1, len(data.train) // LENGTH_SAMPLE)]
    encoded = tokenizer(*zip(*(e.texts for e in sample), strict=True), truncation=True, max_length=max_positions)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    percentile = int(math.ceil(np.percentile(lengths, LENGTH_PERCENTILE)))
    length = min(max_positions, max(LENGTH_STEP, LENGTH_STEP * math.ceil(percentile / LENGTH_STEP)))
    return Survey(len(data.train), len(data.eval["validation"]), tuple(columns), label_column, data.labels,
                  int(counts.min()), percentile, length)


def _text_columns(row: dict[str, object], label_column: str, path: Path) -> list[str]:
    """The columns besides the label that hold text (not numbers): one, or two for pairs."""
    if label_column not in row:
        raise DataError(f"{path}: no column {label_column!r} (the label); the file has {', '.join(map(str, row))}: "
                        "name the label column with --label-column")
    texts = [name for name, value in row.items() if name != label_column and isinstance(value, str)
             and not _number(value)]
    if not 1 <= len(texts) <= 2:
        raise DataError(f"{path}: {len(texts)} text columns ({', '.join(texts) or 'none'}); name one, or two for "
                        "pairs, with --text-columns")
    return texts


def _number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def recipe_for_files(train: Path, validation: Path, out: Path, model: str = DEFAULT_MODEL,
                     text_columns: list[str] | None = None, label_column: str = "label",
                     target: str = "xeon-amx") -> tuple[str, Survey]:
    """The recipe's YAML for ``out`` (paths relative to it) and what it was sized from. ``xeon-amx``
    prunes 90% unstructured (AMX's sparse kernels); ``xeon`` and ``edge`` remove heads and FFN
    neurons, the sparsity that pays on CPUs without AMX, where the architecture allows it."""
    from .modeling import load_tokenizer
    from .recipe import PackageSection
    from .registry import resolve_model
    from .structure import layout_of

    targets = get_args(PackageSection.model_fields["target"].annotation)
    if target not in targets:
        raise UsageError(f"--target {target!r}: use one of {', '.join(targets)}")
    tokenizer = load_tokenizer(model)
    config = Path(resolve_model(model)) / "config.json"
    settings = json.loads(config.read_text()) if config.is_file() else {}
    positions = min(512, int(settings.get("max_position_embeddings", 512)))
    found = survey(train, validation, text_columns, label_column, tokenizer, positions)
    structured = target != "xeon-amx" and layout_of(settings.get("model_type", "")) is not None
    steps_per_epoch = math.ceil(found.train_rows / BATCH)
    total = EPOCHS * steps_per_epoch
    start, end = round(0.05 * total), round(0.6 * total)
    frequency = max(1, (end - start) // 20)
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in out.stem).strip("-.") or "my-data"

    def relative(path: Path) -> str:
        return os.path.relpath(path.resolve(), out.resolve().parent)

    pruning = (["  pruning_type: snip_momentum", "  ffn2_sparsity: 0.5                   # half of each layer's FFN "
                "neurons removed", "  mha_sparsity: 0.33                   # a third of its attention heads"]
               if structured else
               ["  pruning_type: snip_momentum", "  pattern: unstructured                # what AMX's sparse INT8 "
                "kernels use", "  target_sparsity: 0.9"])
    lines = [
        f"# Written by `pofa-openvino init` from {train.name} ({found.train_rows} rows) and {validation.name} "
        f"({found.validation_rows} rows).",
        f"# {len(found.labels)} labels, the smallest class has {found.smallest_class} training rows; token "
        f"lengths ({model}'s tokenizer):",
        f"# {LENGTH_PERCENTILE}th percentile {found.length_percentile} -> max_seq_length {found.max_seq_length} "
        "(longer texts are truncated).",
        "# Method: the teacher stage fine-tunes the dense model on these files first (teacher: auto); the",
        "# student starts from it and is pruned while distilling from it (pure KD, alpha 0), then INT8.",
        *(["# Target without AMX: heads and FFN neurons are removed, so the matrices shrink and every CPU",
           "# runs the model faster (unstructured zeros buy no speed there)."] if structured else
          ["# Target xeon-amx: 90% unstructured zeros, which OpenVINO's sparse INT8 kernels use on AMX."]),
        f"# Schedule: {EPOCHS} epochs of {steps_per_epoch} steps; INC's front-loaded `exp` shape prunes over steps "
        f"{start}-{end},",
        f"# leaving {total - end} steps to recover. report.md puts the gap to the teacher first (report.max_gap: 2 "
        "points).",
        f"# Run: pofa-openvino run {out.name}   (--smoke checks it in a minute)", "",
        f"name: {name}", f"task: {CLASSIFICATION.name}", "", "model:", f"  name_or_path: {model}", "", "data:",
        f"  train_file: {json.dumps(relative(train))}", f"  validation_file: {json.dumps(relative(validation))}",
        f"  text_columns: {json.dumps(list(found.text_columns))}", f"  label_column: {json.dumps(label_column)}",
        f"  labels: {json.dumps(found.labels, ensure_ascii=False)}", f"  max_seq_length: {found.max_seq_length}",
        "", "pruning:", *pruning, "  pruning_scope: local", "  sparsity_decay_type: exp", f"  start_step: {start}",
        f"  end_step: {end}", f"  pruning_frequency: {frequency}",
        "", "distillation:", "  teacher: auto", "  temperature: 2.0", "  alpha: 0.0", "  teacher_training:",
        f"    num_train_epochs: {TEACHER_EPOCHS}", f"    per_device_train_batch_size: {BATCH}",
        "    learning_rate: 5.0e-5", "    warmup_ratio: 0.06", f"    save_steps: {max(50, steps_per_epoch // 2)}",
        "", "training:", f"  num_train_epochs: {EPOCHS}", f"  per_device_train_batch_size: {BATCH}",
        "  learning_rate: 1.0e-4", "  warmup_ratio: 0.06", f"  save_steps: {max(50, steps_per_epoch // 2)}",
        "  seed: 42",
        "", "quantization:", "  approach: static", f"  calibration_sampling_size: {min(300, found.train_rows)}",
        "", "export:", "  sparse_weights_decompression_rate: auto",
        "", "package:", f"  target: {target}", "  archive: true"]
    return "\n".join(lines) + "\n", found
