"""Task data: sequence classification (GLUE, local files, built-in) and question answering (SQuAD).

Both kinds implement :class:`TaskData`, the one interface the training loop and the evaluators use."""

from __future__ import annotations

from typing import Any, Protocol

from ..runtime.tasks import get_task
from .classification import ClassificationData, load_classification
from .example import Example
from .qa import QAData, QAExample, load_qa


class TaskData(Protocol):
    """What training and evaluation need from a task, whatever the task."""

    eval: dict[str, list[Any]]
    labels: list[str] | None
    heads: tuple[str, ...]    # model outputs the task reads (``logits``; ``start_logits``, ``end_logits``)
    targets: tuple[str, ...]  # the batch keys holding their gold values, in the same order

    @property
    def metric(self) -> str: ...

    def train_items(self, tokenizer: Any, max_length: int) -> list[Any]: ...

    def eval_items(self, split: str, tokenizer: Any, max_length: int) -> list[Any]: ...

    def collate(self, tokenizer: Any, items: list[Any], max_length: int) -> dict[str, Any]: ...

    def score(self, split: str, items: list[Any], outputs: dict[str, list[Any]]) -> dict[str, float]: ...


def load_task_data(task: str, data: Any) -> ClassificationData | QAData:
    """The recipe's ``data`` section loaded for ``task``; bad rows stop here, before any training."""
    return load_qa(data) if get_task(task).extractive else load_classification(data)


__all__ = ["ClassificationData", "Example", "QAData", "QAExample", "TaskData", "load_classification", "load_qa",
           "load_task_data"]
