"""Scoring a torch model on a task's evaluation split with the task's own metric."""

from __future__ import annotations

from typing import Any

from .data import TaskData


def torch_outputs(model: Any, tokenizer: Any, data: TaskData, items: list[Any], batch_size: int,
                  max_length: int) -> dict[str, list[Any]]:
    """Each head's output row per item (rows keep their batch's padding; scorers know the true length)."""
    import torch

    model.eval()
    outputs: dict[str, list[Any]] = {head: [] for head in data.heads}
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = data.collate(tokenizer, items[start:start + batch_size], max_length)
            for target in data.targets:
                batch.pop(target, None)
            result = model(**batch)
            for head in data.heads:
                outputs[head].extend(result[head].float().numpy())
    return outputs


def evaluate_torch(model: Any, tokenizer: Any, data: TaskData, split: str, batch_size: int,
                   max_length: int) -> dict[str, float]:
    items = data.eval_items(split, tokenizer, max_length)
    return data.score(split, items, torch_outputs(model, tokenizer, data, items, batch_size, max_length))
