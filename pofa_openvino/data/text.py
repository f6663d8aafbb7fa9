"""Unlabeled text for prune-once pre-training: local files of several kinds, or a hub dataset.

Only the text is read; labels and other columns are ignored. A SQuAD JSON file gives its paragraph
contexts (each once), a ``.txt`` file one text per non-empty line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import DataError
from .classification import read_rows, read_utf8
from .hub import load_hub_dataset
from .qa import squad_contexts

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".json")


def load_texts(section: Any) -> list[str]:
    """Every text of the ``pretrain`` section's ``text_files`` and ``dataset``, in order, capped at
    ``max_samples``."""
    texts: list[str] = []
    for name in section.text_files:
        found = read_texts(Path(name), section.text_column)
        log.info("pretraining text: %d texts from %s", len(found), name)
        texts.extend(found)
    if section.dataset:
        loaded = load_hub_dataset(section.dataset, section.dataset_config)
        split = loaded["train"]
        if section.text_column not in split.column_names:
            raise DataError(f"pretrain.dataset {section.dataset!r}: no column {section.text_column!r}; it has "
                            f"{', '.join(split.column_names)} (set pretrain.text_column)")
        count = len(split) if not section.max_samples else min(len(split), section.max_samples)
        texts.extend(text for text in split.select(range(count))[section.text_column] if text and text.strip())
        log.info("pretraining text: %d texts from %s", count, section.dataset)
    if not texts:
        raise DataError("pretrain: the text sources hold no text")
    return texts[: section.max_samples] if section.max_samples else texts


def read_texts(path: Path, column: str) -> list[str]:
    """The texts of one local file (see the module docstring for what each kind gives)."""
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(f"{path}: unsupported text file {suffix!r}; use {', '.join(TEXT_SUFFIXES)}")
    if suffix == ".txt":
        return [line.strip() for line in read_utf8(path).splitlines() if line.strip()]
    if suffix == ".json":
        return squad_contexts(path)
    rows = read_rows(path)
    if column not in rows[0]:
        raise DataError(f"{path}: no column {column!r}; the file has {', '.join(map(str, rows[0]))} "
                        "(set pretrain.text_column)")
    return [row[column].strip() for row in rows if isinstance(row.get(column), str) and row[column].strip()]
