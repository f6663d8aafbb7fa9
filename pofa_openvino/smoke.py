"""Smoke mode: any recipe, end to end in a minute with no hub. The model (and the teacher) become a
tiny generated checkpoint of the same architecture, the data a few generated rows in the task's own
format (single sentences, sentence pairs with the task's labels, or SQuAD JSON), and every stage
runs a handful of steps. Nothing else of the recipe changes, so its wiring is what gets tested."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from .recipe import Recipe, TrainingSection
from .runtime.tasks import get_task

ROWS = 48


def smoke_recipe(spec: Recipe, workdir: Path) -> Recipe:
    """``spec`` with a tiny local model, local rows of the same task format and a few steps."""
    from .data.synthetic import sentiment
    from .tiny import make_tiny_model

    workdir.mkdir(parents=True, exist_ok=True)
    train, evaluation = sentiment()
    sentences = [e.texts[0] for e in train + evaluation]
    words = sorted({w for s in sentences for w in s.split()} | {"what", "who", "is", "?"})
    model_dir = make_tiny_model(_architecture(spec), workdir / "model", words)
    update: dict[str, object] = {
        "model": spec.model.model_copy(update={"name_or_path": str(model_dir), "revision": None}),
    }
    if spec.pretrain is not None:
        update["pretrain"] = _pretrain(workdir, sentences, spec, model_dir)
    data, extractive = None, get_task(spec.task).extractive
    if spec.data is not None:
        data = update["data"] = (_squad(workdir, sentences, spec) if extractive
                                 else _classification(workdir, sentences, spec))
    if spec.training is not None:
        update["training"] = _few_steps(spec.training)
    if spec.distillation is not None and spec.distillation.trains_teacher:  # the run trains it: briefly
        update["distillation"] = spec.distillation.model_copy(
            update={"teacher_training": _few_steps(spec.distillation.teacher_training or spec.training)})
    elif spec.distillation is not None:
        labels = None if extractive else data.labels
        update["distillation"] = spec.distillation.model_copy(
            update={"teacher": str(_teacher(model_dir, workdir / "teacher", spec.task, labels))})
    if spec.pruning is not None:
        update["pruning"] = spec.pruning.model_copy(update={
            "start_step": min(spec.pruning.start_step, 1), "end_step": min(spec.pruning.end_step, 3),
            "pruning_frequency": 1})
    if spec.quantization is not None:
        quick: dict[str, object] = {"calibration_sampling_size": 8}
        if spec.quantization.approach == "qat":  # QAT's own budget, briefly too
            quick["training"] = _few_steps(spec.qat_training())
        update["quantization"] = spec.quantization.model_copy(update=quick)
    if spec.benchmark is not None:
        update["benchmark"] = spec.benchmark.model_copy(update={"sequence_lengths": [16], "duration_s": 0.05,
                                                                "threads": 1})
    return spec.model_copy(update=update)


def _few_steps(training: TrainingSection) -> TrainingSection:
    return training.model_copy(update={"max_steps": 4, "per_device_train_batch_size": 8,
                                       "per_device_eval_batch_size": 8, "logging_steps": 2})


def _pretrain(workdir: Path, sentences: list[str], spec: Recipe, model_dir: Path):
    """Unlabeled text from the generated sentences, a few steps, the same objective and pruning kind
    (a masked-LM head on the tiny model when the recipe asks for ``mlm``)."""
    from .pretrain import load_encoder

    section = spec.pretrain
    if section.objective == "mlm":
        load_encoder(str(model_dir), "mlm").save_pretrained(model_dir)
    texts = workdir / "texts.txt"
    texts.write_text("\n".join(sentences[:ROWS * 2]) + "\n", encoding="utf-8")
    pruning = section.pruning.model_copy(update={"start_step": None, "end_step": None, "pruning_frequency": 1})
    training = section.training.model_copy(update={"max_steps": 8, "per_device_train_batch_size": 8,
                                                   "logging_steps": 2})
    return section.model_copy(update={"text_files": [str(texts)], "dataset": None, "max_seq_length": 32,
                                      "max_samples": None, "eval_samples": 8, "teacher": None,
                                      "pruning": pruning, "training": training})


def _architecture(spec: Recipe) -> str:
    from .registry import MODELS

    entry = MODELS.get(spec.model.name_or_path)
    if entry is not None:
        return entry.architecture
    return "distilbert" if "distilbert" in spec.model.name_or_path.lower() else "bert"


def _classification(workdir: Path, sentences: list[str], spec: Recipe):
    """The task's text columns and label names (GLUE's when the recipe names a GLUE task)."""
    from .data.classification import GLUE

    data = spec.data
    name = (data.dataset or "").rsplit("/", 1)[-1]
    columns, labels, _ = GLUE.get(name, ((data.text_columns or ["text"]), data.labels or ["0", "1"], ()))
    columns = list(columns)
    rng = random.Random(0)
    files = {}
    for split, count in (("train", ROWS), ("validation", ROWS // 2)):
        path = workdir / f"{split}.tsv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            writer.writerow([*columns, "label"])
            for i in range(count):
                writer.writerow([*(rng.choice(sentences) for _ in columns), labels[i % len(labels)]])
        files[split] = str(path)
    return data.model_copy(update={"dataset": None, "train_file": files["train"], "validation_file":
                                   files["validation"], "text_columns": columns, "label_column": "label",
                                   "labels": list(labels), "max_seq_length": 64, "max_train_samples": None,
                                   "max_eval_samples": None})


def _squad(workdir: Path, sentences: list[str], spec: Recipe):
    """SQuAD v1.1 JSON: short contexts, each question answered by a span of its context."""
    rng = random.Random(0)
    paragraphs = []
    for i in range(ROWS // 2):
        context = " ".join(rng.sample(sentences, 3))
        answer = context.split()[rng.randrange(len(context.split()) - 1)]
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": f"what is {answer} ?",
                                                        "answers": [{"text": answer,
                                                                     "answer_start": context.index(answer)}]}]})
    path = workdir / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "smoke", "paragraphs": paragraphs}]}))
    return spec.data.model_copy(update={"dataset": None, "train_file": str(path), "validation_file": str(path),
                                        "max_seq_length": 64, "doc_stride": 32, "max_train_samples": None,
                                        "max_eval_samples": None})


def _teacher(model_dir: Path, out: Path, task: str, labels: list[str] | None) -> Path:
    """The tiny model with the task head the student has, standing in for the fine-tuned teacher."""
    from .modeling import load_model, load_tokenizer

    load_model(str(model_dir), task, labels).save_pretrained(out)
    load_tokenizer(str(model_dir)).save_pretrained(out)
    return out
