"""Sequence-classification data: GLUE by hub name, local csv/tsv/jsonl, or the built-in set.

Bad rows stop the run before training, naming the file, the row and the column."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, listed
from ..metrics import classification_metrics
from ..runtime.tasks import CLASSIFICATION
from .example import Example
from .hub import load_hub_dataset

log = logging.getLogger(__name__)

# GLUE tasks by hub name: text columns, label names, evaluation split(s).
GLUE: dict[str, tuple[tuple[str, ...], list[str], tuple[str, ...]]] = {
    "sst2": (("sentence",), ["negative", "positive"], ("validation",)),
    "mnli": (("premise", "hypothesis"), ["entailment", "neutral", "contradiction"],
             ("validation_matched", "validation_mismatched")),
    "qqp": (("question1", "question2"), ["not_duplicate", "duplicate"], ("validation",)),
    "qnli": (("question", "sentence"), ["entailment", "not_entailment"], ("validation",)),
}


@dataclass
class ClassificationData:
    """Train and evaluation examples with the label names (index = class id).

    Implements :class:`~pofa_openvino.data.TaskData`; examples are tokenized per batch."""

    train: list[Example]
    eval: dict[str, list[Example]]
    labels: list[str]
    text_columns: tuple[str, ...]
    with_f1: bool = False  # QQP reports F1 beside accuracy
    heads: tuple[str, ...] = CLASSIFICATION.heads
    targets: tuple[str, ...] = CLASSIFICATION.targets

    @property
    def metric(self) -> str:
        return "f1" if self.with_f1 else CLASSIFICATION.metric

    def train_items(self, tokenizer: Any, max_length: int) -> list[Example]:
        return self.train

    def eval_items(self, split: str, tokenizer: Any, max_length: int) -> list[Example]:
        return self.eval[split]

    def collate(self, tokenizer: Any, items: list[Example], max_length: int) -> dict[str, Any]:
        """Tokenized torch batch (padded to its longest) with a ``labels`` tensor."""
        import torch

        columns = list(zip(*(e.texts for e in items), strict=True))
        encoded = tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        encoded["labels"] = torch.tensor([e.label for e in items])
        return dict(encoded)

    def score(self, split: str, items: list[Example], outputs: dict[str, list[Any]]) -> dict[str, float]:
        predictions = [int(row.argmax()) for row in outputs["logits"]]
        return classification_metrics(predictions, [e.label for e in items], self.with_f1)


def load_classification(data: Any) -> ClassificationData:
    """``data`` is the recipe's :class:`~pofa_openvino.recipe.DataSection`."""
    if data.dataset == "builtin:sentiment":
        from .synthetic import LABELS, sentiment

        train, evaluation = sentiment()
        result = ClassificationData(train, {"validation": evaluation}, list(LABELS), ("text",))
    elif data.dataset is not None:
        result = _load_hub(data)
    else:
        columns = tuple(data.text_columns or ("text",))
        train_path, eval_path = Path(data.train_file), Path(data.validation_file)
        train_table = read_table(train_path)
        labels = data.labels or _label_set(train_table.rows, data.label_column, train_path)
        labels_from = "data.labels" if data.labels else f"the labels of the training file {train_path.name}"
        train = _examples(train_table, train_path, columns, data.label_column, labels, labels_from)
        seen = {e.label for e in train}
        if len(seen) < 2:
            raise DataError(f"{data.train_file}: every training row has the label {labels[seen.pop()]!r}; a "
                            "classifier needs rows of at least two classes")
        evaluation = _examples(read_table(eval_path), eval_path, columns, data.label_column, labels, labels_from)
        result = ClassificationData(train, {"validation": evaluation}, labels, columns)
    if data.max_train_samples:
        result.train = result.train[: data.max_train_samples]
    if data.max_eval_samples:
        result.eval = {k: v[: data.max_eval_samples] for k, v in result.eval.items()}
    log.info("data: %d train, %s eval examples, labels %s", len(result.train),
             "/".join(str(len(v)) for v in result.eval.values()), result.labels)
    return result


@dataclass(frozen=True)
class Table:
    """A data file's rows as dicts, with the line each row starts on (a quoted text may span lines)."""

    rows: list[dict[str, Any]]
    lines: list[int]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .csv, .tsv or .jsonl file as dicts (header line required for csv/tsv)."""
    return read_table(path).rows


def read_table(path: Path) -> Table:
    """A .csv, .tsv or .jsonl file (see :func:`_delimited` for how quotes are read); every csv/tsv row must
    have the header's number of fields."""
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".tsv", ".jsonl", ".json"}:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .jsonl")
    text = read_utf8(path, newline="")
    table = _json_lines(path, text) if suffix in {".jsonl", ".json"} else \
        _delimited(path, text, "\t" if suffix == ".tsv" else ",")
    if not table.rows:
        raise DataError(f"{path}: the file has no data rows")
    return table


def _json_lines(path: Path, text: str) -> Table:
    rows, lines = [], []
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not a JSON object: {exc.msg}") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: a {type(row).__name__}, not a JSON object (one object per line)")
            rows.append(row)
            lines.append(number)
    return Table(rows, lines)


def _delimited(path: Path, text: str, delimiter: str) -> Table:
    """Standard quoting (RFC 4180, what pandas, the csv module and spreadsheets write: a field holding the
    delimiter, a quote or a line break is enclosed in ``"``, a quote inside it doubled) when the whole
    file is valid under it, i.e. every field that opens with ``"`` closes right before a delimiter or a
    line end. Otherwise the file is unquoted, as GLUE ships its TSVs: a ``"`` is text (GLUE's
    ``"quoted" word`` is not a quoted field) and a field ends only at the delimiter or the line end.
    Of the readings, the first under which every row has the header's width is taken (a quote that
    happens to close on a later line is no reason to join lines that read well unquoted)."""
    readings, unquoted_because = [], ""
    try:
        readings.append(_split(text, delimiter, csv.QUOTE_MINIMAL))
    except csv.Error as exc:
        reason = str(exc).replace("\t", "\\t")  # csv's message holds the delimiter itself
        unquoted_because = f" (the file is read unquoted: {reason})"
        log.debug("%s: not standard quoting, every quote is text: %s", path, exc)
    try:
        readings.append(_split(text, delimiter, csv.QUOTE_NONE))
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        raise DataError(f"{path}: {exc}") from None
    records = next((r for r in readings if all(len(fields) == len(r[0][1]) for _, fields in r)), readings[0])
    if not records:
        return Table([], [])
    (_, header), body = records[0], records[1:]
    separator = "a tab" if delimiter == "\t" else "a comma"
    for line, fields in body:
        if len(fields) != len(header):
            raise DataError(f"{path}: row {line}: {len(fields)} fields where the header has {len(header)}; a text "
                            f"holding {separator} must be enclosed in double quotes{unquoted_because}")
    return Table([dict(zip(header, fields, strict=True)) for _, fields in body], [line for line, _ in body])


def _split(text: str, delimiter: str, quoting: int) -> list[tuple[int, list[str]]]:
    """Non-empty records with the line each starts on; ``csv.Error`` (with the row) on a malformed one."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    records: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for fields in reader:
            if fields:
                records.append((end + 1, fields))
            end = reader.line_num
    except csv.Error as exc:
        raise csv.Error(f"row {end + 1}: {exc}") from None
    return records


def read_utf8(path: Path, newline: str | None = None) -> str:
    """A data file's text; a byte-order mark (spreadsheets write one) is not part of it."""
    try:
        with path.open(encoding="utf-8-sig", newline=newline) as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise DataError(f"{path}:{_undecodable_line(path)}: not UTF-8 text; save the file as UTF-8") from None


def _undecodable_line(path: Path) -> int:
    """The line of the first byte that is not UTF-8 (the decoder's own offset is within its buffer)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return data[: exc.start].count(b"\n") + 1
    return 1


def _label_set(rows: list[dict[str, Any]], column: str, path: Path) -> list[str]:
    """Names sorted; integer labels are class ids and must be 0..N-1 (0 and 99999 would make a
    100,000-class head)."""
    values = {str(row.get(column)) for row in rows if row.get(column) not in (None, "")}
    if values and all(v.lstrip("-").isdigit() for v in values):
        ids = sorted(int(v) for v in values)
        if ids != list(range(len(ids))):
            shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
            raise DataError(f"{path}: integer labels are class ids 0..N-1, the file has {shown}; renumber them "
                            "or list the names in data.labels")
        return [str(i) for i in ids]
    return sorted(values)


def _examples(table: Table, path: Path, columns: tuple[str, ...], label_column: str, labels: list[str],
              labels_from: str) -> list[Example]:
    """Validate every row, named by the line it starts on. A label outside ``labels`` is refused: the
    head has a class only for each of them (``labels_from`` says where they came from)."""
    rows = table.rows
    for needed in (*columns, label_column):
        if needed not in rows[0]:
            raise DataError(f"{path}: row {table.lines[0]}: column {needed!r} is missing; "
                            f"the file has {', '.join(map(str, rows[0]))}")
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for number, row in zip(table.lines, rows, strict=True):
        texts = []
        for column in columns:
            text = row.get(column)
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{path}: row {number}: column {column!r} is empty")
            texts.append(text)
        label = str(row.get(label_column))
        if label not in index:
            raise DataError(f"{path}: row {number}: column {label_column!r}: label {label!r} is not one "
                            f"of {listed(labels)} ({labels_from})")
        out.append(Example(tuple(texts), index[label]))
    return out


def _load_hub(data: Any) -> ClassificationData:
    """GLUE through ``datasets`` (``glue/sst2``, ``nyu-mll/glue/mnli`` or just ``sst2``)."""
    *repo, task = data.dataset.split("/")
    if task not in GLUE:
        raise DataError(f"data.dataset {data.dataset!r}: unknown GLUE task; use one of "
                        f"{', '.join('glue/' + t for t in GLUE)}, or local files")
    columns, labels, eval_splits = GLUE[task]
    columns = tuple(data.text_columns or columns)
    loaded = load_hub_dataset("/".join(repo) or "nyu-mll/glue", task)

    def convert(split: str) -> list[Example]:
        return [Example(tuple(row[c] for c in columns), int(row["label"])) for row in loaded[split]]

    return ClassificationData(convert("train"), {s: convert(s) for s in eval_splits}, list(labels), columns,
                              with_f1=task == "qqp")
