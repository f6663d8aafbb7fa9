"""Extractive question answering: SQuAD v1.1 by hub name or a local SQuAD-format JSON.

Contexts longer than ``max_seq_length`` become several features that overlap by ``doc_stride``
tokens; predictions take the best-scoring span over a question's features (n-best search with a
maximum answer length). Unanswerable questions (SQuAD 2.0 files) are left out, as v1.1 scores them."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..metrics import squad_metrics
from ..runtime.tasks import QUESTION_ANSWERING
from .classification import read_utf8
from .hub import load_hub_dataset

log = logging.getLogger(__name__)

SQUAD_HUB_NAMES = ("squad", "rajpurkar/squad")


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]


@dataclass
class QAData:
    """Questions with their contexts and gold answers; features are built once per tokenizer.

    Implements :class:`~pofa_openvino.data.TaskData`."""

    train: list[QAExample]
    eval: dict[str, list[QAExample]]
    doc_stride: int = 128
    n_best_size: int = 20
    max_answer_length: int = 30
    labels: None = None
    heads: tuple[str, ...] = QUESTION_ANSWERING.heads
    targets: tuple[str, ...] = QUESTION_ANSWERING.targets
    metric: str = QUESTION_ANSWERING.metric
    _features: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def train_items(self, tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
        return self._cached("train", self.train, tokenizer, max_length, training=True)

    def eval_items(self, split: str, tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
        return self._cached(split, self.eval[split], tokenizer, max_length, training=False)

    def collate(self, tokenizer: Any, items: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
        """Pad the features' model inputs (and answer positions when training) into torch tensors."""
        import torch

        keys = [k for k in tokenizer.model_input_names if k in items[0]]
        batch = dict(tokenizer.pad([{k: item[k] for k in keys} for item in items], return_tensors="pt"))
        for target in self.targets:
            if target in items[0]:
                batch[target] = torch.tensor([item[target] for item in items])
        return batch

    def score(self, split: str, items: list[dict[str, Any]], outputs: dict[str, list[Any]]) -> dict[str, float]:
        examples = self.eval[split]
        predictions = best_spans(examples, items, outputs["start_logits"], outputs["end_logits"],
                                 self.n_best_size, self.max_answer_length)
        return squad_metrics(predictions, ((e.id, e.answers) for e in examples))

    def _cached(self, split: str, examples: list[QAExample], tokenizer: Any, max_length: int,
                training: bool) -> list[dict[str, Any]]:
        key = (split, max_length)
        if key not in self._features:
            self._features[key] = features(tokenizer, examples, max_length, self.doc_stride, training)
        return self._features[key]


def features(tokenizer: Any, examples: list[QAExample], max_length: int, doc_stride: int,
             training: bool) -> list[dict[str, Any]]:
    """Tokenize question + context into overlapping windows.

    Training features carry the answer's token positions (the [CLS] position when the answer is not
    inside the window); evaluation features carry the context character offsets of every token."""
    encoded = tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples],
                        truncation="only_second", max_length=max_length, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    keys = [k for k in tokenizer.model_input_names if k in encoded]
    out = []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        example_index = encoded["overflow_to_sample_mapping"][i]
        sequence = encoded.sequence_ids(i)
        feature: dict[str, Any] = {k: encoded[k][i] for k in keys}
        if training:
            example = examples[example_index]
            start_char = example.answer_starts[0]
            feature["start_positions"], feature["end_positions"] = _answer_tokens(
                offsets, sequence, start_char, start_char + len(example.answers[0]))
        else:
            feature["example_index"] = example_index
            feature["offset_mapping"] = [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence, strict=True)]
        out.append(feature)
    log.info("question answering: %d examples -> %d features (max_seq_length %d, doc_stride %d)", len(examples),
             len(out), max_length, doc_stride)
    return out


def _answer_tokens(offsets: list[tuple[int, int]], sequence: list[int | None], start_char: int,
                   end_char: int) -> tuple[int, int]:
    context = [i for i, s in enumerate(sequence) if s == 1]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = next(i for i in range(last, first - 1, -1) if offsets[i][0] <= start_char)
    end = next(i for i in range(first, last + 1) if offsets[i][1] >= end_char)
    return start, end


def best_spans(examples: list[QAExample], items: list[dict[str, Any]], start_logits: list[Any],
               end_logits: list[Any], n_best_size: int, max_answer_length: int) -> dict[str, str]:
    """The highest-scoring valid span (start + end logit) of each question over all its features."""
    import numpy as np

    by_example: dict[int, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_example[item["example_index"]].append(index)
    predictions = {}
    for example_index, example in enumerate(examples):
        best_score, best_text = -np.inf, ""
        for index in by_example[example_index]:
            offsets = items[index]["offset_mapping"]
            starts, ends = np.asarray(start_logits[index]), np.asarray(end_logits[index])
            for s in np.argsort(starts[: len(offsets)])[::-1][:n_best_size]:
                for e in np.argsort(ends[: len(offsets)])[::-1][:n_best_size]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    if starts[s] + ends[e] > best_score:
                        best_score = starts[s] + ends[e]
                        best_text = example.context[offsets[s][0]: offsets[e][1]]
        predictions[example.id] = best_text
    return predictions


def load_qa(data: Any) -> QAData:
    """``data`` is the recipe's DataSection: ``dataset: squad`` (or a local copy of the hub set), or
    ``train_file`` / ``validation_file`` in the SQuAD JSON layout."""
    if data.dataset is not None:
        train, evaluation = _load_hub(data.dataset)
    else:
        train = read_squad_json(Path(data.train_file))
        evaluation = read_squad_json(Path(data.validation_file))
    train = train[: data.max_train_samples] if data.max_train_samples else train
    evaluation = evaluation[: data.max_eval_samples] if data.max_eval_samples else evaluation
    log.info("data: %d train, %d eval questions", len(train), len(evaluation))
    return QAData(train, {"validation": evaluation}, data.doc_stride, data.n_best_size, data.max_answer_length)


SQUAD_LAYOUT = '{"data": [{"paragraphs": [{"context": ..., "qas": [...]}]}]}'


def read_squad_json(path: Path) -> list[QAExample]:
    """Answerable questions of a SQuAD v1.1/v2.0 JSON file, each answer checked against its context. Every
    value the reader uses is checked for its JSON type first, so a malformed file is one line naming the
    record (``data[0].paragraphs[2].qas[5].answers[0]``) and the column."""
    examples, skipped = [], 0
    for where, paragraph in squad_paragraphs(path):
        context = _column(paragraph, "context", str, where)
        for q, qa in enumerate(_column(paragraph, "qas", list, where)):
            at = f"{where}.qas[{q}]"
            qa = _record(qa, at)
            answers = [_answer(_record(answer, f"{at}.answers[{i}]"), f"{at}.answers[{i}]")
                       for i, answer in enumerate(_column(qa, "answers", list, at, required=False) or [])]
            if _column(qa, "is_impossible", bool, at, required=False) or not answers:
                skipped += 1
                continue
            question_id = str(_column(qa, "id", (str, int), at))
            examples.append(_example(at, question_id, _column(qa, "question", str, at), context, answers))
    if skipped:
        log.info("%s: %d unanswerable questions left out (SQuAD v1.1 scoring)", path, skipped)
    if not examples:
        raise DataError(f"{path}: the file has no answerable questions")
    return examples


def squad_paragraphs(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each paragraph of a SQuAD JSON file with the name of its record (``FILE: data[0].paragraphs[2]``),
    the layout checked on the way."""
    try:
        top = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(top, dict) or "data" not in top:
        found = "an object without 'data'" if isinstance(top, dict) else _kind(top)
        raise DataError(f"{path}: not a SQuAD JSON file (expected {SQUAD_LAYOUT}): the file holds {found}")
    for a, article in enumerate(_column(top, "data", list, str(path))):
        at = f"{path}: data[{a}]"
        for p, paragraph in enumerate(_column(_record(article, at), "paragraphs", list, at)):
            yield f"{at}.paragraphs[{p}]", _record(paragraph, f"{at}.paragraphs[{p}]")


def squad_contexts(path: Path) -> list[str]:
    """Each paragraph context of a SQuAD JSON file, once (prune once pre-trains on them)."""
    contexts = (_column(paragraph, "context", str, where) for where, paragraph in squad_paragraphs(path))
    return list(dict.fromkeys(c.strip() for c in contexts if c.strip()))


def _answer(answer: dict[str, Any], where: str) -> tuple[str, int]:
    return _column(answer, "text", str, where), _column(answer, "answer_start", int, where)


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "an integer",
          float: "a number", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _record(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where}: {_what(value)}, not an object (see {SQUAD_LAYOUT})")
    return value


def _column(record: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            required: bool = True) -> Any:
    """``record[key]`` when it has the JSON type ``kind`` (true/false is not an integer, as in JSON)."""
    if key not in record:
        if required:
            raise DataError(f"{where}: column {key!r} is missing")
        return None
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(_KINDS[k] for k in kinds)
        raise DataError(f"{where}: column {key!r}: {_what(value)}, not {expected}")
    return value


def _what(value: Any, limit: int = 40) -> str:
    """``"0" is a string``: the value as JSON (shortened) and its JSON type."""
    if value is None:
        return "null"
    text = json.dumps(value, ensure_ascii=False)
    return f"{text if len(text) <= limit else text[: limit - 3] + '...'} is {_kind(value)}"


def _example(where: str, question_id: str, question: str, context: str,
             answers: list[tuple[str, int]]) -> QAExample:
    for text, start in answers:
        if context[start: start + len(text)] != text:
            raise DataError(f"{where} (id {question_id}): column 'answers': answer_start {start} does not point at "
                            f"{text!r}; the context there reads {context[start: start + len(text)]!r}")
    return QAExample(question_id, question, context, tuple(t for t, _ in answers), tuple(s for _, s in answers))


def _load_hub(name: str) -> tuple[list[QAExample], list[QAExample]]:
    """SQuAD v1.1 through ``datasets``: the hub id ``squad`` or a local directory laid out like it."""
    if name not in SQUAD_HUB_NAMES and not Path(name).is_dir():
        raise DataError(f"data.dataset {name!r}: question answering reads {' or '.join(SQUAD_HUB_NAMES)} "
                        f"(SQuAD v1.1), a local copy of it, or SQuAD JSON files in train_file/validation_file")
    loaded = load_hub_dataset("rajpurkar/squad" if name == "squad" else name)

    def convert(split: str) -> list[QAExample]:
        return [_example(f"{name}: {split} row {i}", row["id"], row["question"], row["context"],
                         list(zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)))
                for i, row in enumerate(loaded[split])]

    return convert("train"), convert("validation")
