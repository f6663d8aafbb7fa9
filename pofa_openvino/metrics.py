"""Task metrics as the PruneOFA table reports them: accuracy (and F1 for QQP), SQuAD v1.1 EM/F1.

Scores are fractions in [0, 1]; the SQuAD normalisation is the official v1.1 script's."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable


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


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], golds: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, float]:
    """EM and F1, each the best over a question's gold answers, averaged over the questions."""
    em = f1 = 0.0
    count = 0
    for question_id, answers in golds:
        prediction = predictions.get(question_id, "")
        em += max(exact_match(prediction, answer) for answer in answers)
        f1 += max(token_f1(prediction, answer) for answer in answers)
        count += 1
    return {"exact_match": round(em / count, 6), "f1": round(f1 / count, 6)}
