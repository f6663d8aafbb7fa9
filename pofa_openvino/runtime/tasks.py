"""The task registry: what the tool knows per task (its model classes, heads, targets, text inputs and
metric) in one frozen record each, so that no module keeps a map of task names of its own.

Part of the runtime (a bundle's manifest names its task; predict and serve read its heads): the standard
library and :mod:`pofa_openvino.errors` only. The toolkit's model classes are stored by name, and the
toolkit resolves them where it loads or exports a model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import PofaError

TaskName = Literal["text-classification", "question-answering"]  # what a recipe's `task` may say


@dataclass(frozen=True)
class Task:
    """One task's vocabulary. ``heads`` are the model outputs the task reads and ``targets`` the batch
    keys holding their gold values, in the same order. An ``extractive`` task answers with a span of a
    context (a question and a context in, a detokenizer out, no labels); the others answer with one of
    the data's labels."""

    name: str
    title: str           # in words, as a model card says it
    auto_class: str      # transformers' Auto class of the task model
    openvino_class: str  # optimum-intel's OpenVINO model class
    heads: tuple[str, ...]
    targets: tuple[str, ...]
    metric: str          # the headline metric (a dataset may report another: QQP's F1)
    extractive: bool

    @property
    def architecture_suffix(self) -> str:
        """How a task model's architecture name ends (``BertForQuestionAnswering``)."""
        return self.auto_class.removeprefix("AutoModel")

    def text_inputs(self, text_columns: int) -> int:
        """Strings per example: a question and a context, else one per text column (a pair is two)."""
        return 2 if self.extractive or text_columns == 2 else 1


CLASSIFICATION = Task("text-classification", "text classification", "AutoModelForSequenceClassification",
                      "OVModelForSequenceClassification", heads=("logits",), targets=("labels",),
                      metric="accuracy", extractive=False)
QUESTION_ANSWERING = Task("question-answering", "extractive question answering", "AutoModelForQuestionAnswering",
                          "OVModelForQuestionAnswering", heads=("start_logits", "end_logits"),
                          targets=("start_positions", "end_positions"), metric="f1", extractive=True)
TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, QUESTION_ANSWERING)}


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is an error that lists the known ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise PofaError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None


def task_of_architectures(architectures: Iterable[str]) -> Task | None:
    """The task whose head a model config's ``architectures`` name; None for a bare encoder."""
    names = [str(a) for a in architectures]
    return next((task for task in TASKS.values() if any(a.endswith(task.architecture_suffix) for a in names)), None)


def task_of(model_dir: Path) -> str:
    """The task of a checkpoint or IR directory, from its ``config.json``: text classification unless the
    config names the head of another task."""
    config = model_dir / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    return (task_of_architectures(architectures) or CLASSIFICATION).name
