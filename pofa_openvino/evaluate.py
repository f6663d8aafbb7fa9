"""Scoring a model on a task's evaluation split with the task's own metric, whatever runs it (torch,
or an OpenVINO IR through :mod:`pofa_openvino.runtime.model`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .data import TaskData
from .distributed import to_device

Predictor = Callable[[dict[str, Any]], dict[str, Any]]  # a collated batch (no targets) -> outputs by head


def task_outputs(predict: Predictor, tokenizer: Any, data: TaskData, items: list[Any], batch_size: int,
                 max_length: int) -> dict[str, list[np.ndarray]]:
    """Each head's output row per item (rows keep their batch's padding; scorers know the true length)."""
    outputs: dict[str, list[np.ndarray]] = {head: [] for head in data.heads}
    for start in range(0, len(items), batch_size):
        batch = data.collate(tokenizer, items[start:start + batch_size], max_length)
        for target in data.targets:
            batch.pop(target, None)
        result = predict(batch)
        for head in data.heads:
            outputs[head].extend(np.asarray(result[head], dtype=np.float32))
    return outputs


def score(predict: Predictor, tokenizer: Any, data: TaskData, split: str, batch_size: int,
          max_length: int) -> dict[str, float]:
    items = data.eval_items(split, tokenizer, max_length)
    return data.score(split, items, task_outputs(predict, tokenizer, data, items, batch_size, max_length))


def torch_predictor(model: Any) -> Predictor:
    import torch

    def predict(batch: dict[str, Any]) -> dict[str, Any]:
        model.eval()
        with torch.inference_mode():
            result = model(**to_device(batch, model.device))
        return {name: value.float().cpu().numpy() for name, value in result.items() if hasattr(value, "numpy")}

    return predict


def openvino_predictor(model: Any) -> Predictor:
    """``model`` is a :class:`~pofa_openvino.runtime.model.SparseModel`."""
    return lambda batch: model.infer({name: value.numpy() for name, value in batch.items()})


def evaluate_torch(model: Any, tokenizer: Any, data: TaskData, split: str, batch_size: int,
                   max_length: int) -> dict[str, float]:
    return score(torch_predictor(model), tokenizer, data, split, batch_size, max_length)
