"""Task metrics, as the PruneOFA table reports them (accuracy; accuracy and F1 for QQP)."""

from __future__ import annotations

from typing import Any

from .data import Example
from .data.classification import batches


def classification_metrics(predictions: list[int], labels: list[int], with_f1: bool = False) -> dict[str, float]:
    """Accuracy, and binary F1 of class 1 when asked (QQP)."""
    correct = sum(p == y for p, y in zip(predictions, labels, strict=True))
    metrics = {"accuracy": correct / len(labels)}
    if with_f1:
        tp = sum(p == 1 and y == 1 for p, y in zip(predictions, labels, strict=True))
        fp = sum(p == 1 and y == 0 for p, y in zip(predictions, labels, strict=True))
        fn = sum(p == 0 and y == 1 for p, y in zip(predictions, labels, strict=True))
        metrics["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {k: round(v, 6) for k, v in metrics.items()}


def torch_predictions(model: Any, tokenizer: Any, examples: list[Example], batch_size: int,
                      max_length: int) -> list[int]:
    import torch

    model.eval()
    predictions: list[int] = []
    with torch.inference_mode():
        for batch in batches(tokenizer, examples, batch_size, max_length):
            batch.pop("labels")
            predictions += model(**batch).logits.argmax(-1).tolist()
    return predictions


def evaluate_torch(model: Any, tokenizer: Any, examples: list[Example], batch_size: int, max_length: int,
                   with_f1: bool = False) -> dict[str, float]:
    predictions = torch_predictions(model, tokenizer, examples, batch_size, max_length)
    return classification_metrics(predictions, [e.label for e in examples], with_f1)
