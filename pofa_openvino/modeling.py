"""Loading task models and tokenizers from a hub id, a local HF directory or an offline package."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .registry import resolve_model
from .runtime.tasks import get_task, task_of_architectures
from .structure import STRUCTURE_KEY

log = logging.getLogger(__name__)


def load_tokenizer(ref: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(ref)
    return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                         local_files_only=Path(path).is_dir())


def load_model(ref: str, task: str, labels: list[str] | None = None, revision: str | None = None,
               trust_remote_code: bool = False) -> Any:
    """The task model; a missing head (an encoder-only checkpoint) is created and said so."""
    import transformers

    quiet_transformers()
    path = resolve_model(ref)
    auto = getattr(transformers, get_task(task).auto_class)
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={name: i for i, name in enumerate(labels)})
    structure = structure_of(path)
    if structure is not None:
        model = _load_slimmed(auto, path, structure, kwargs)
    else:
        model = auto.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                     local_files_only=Path(path).is_dir(), **kwargs)
    if labels is not None and not _has_head(path, len(labels)):
        log.info("the checkpoint has no %d-label head: a new one is initialised for fine-tuning", len(labels))
    log.info("loaded %s (%s, %.1fM parameters) from %s", type(model).__name__, model.config.model_type,
             sum(p.numel() for p in model.parameters()) / 1e6, path)
    return model


def structure_of(path: str) -> dict[str, Any] | None:
    """The per-layer shapes a slimmed local checkpoint records (see ``structure``), or None."""
    import json

    config = Path(path) / "config.json"
    return json.loads(config.read_text()).get(STRUCTURE_KEY) if config.is_file() else None


def _load_slimmed(auto: Any, path: str, structure: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """A slimmed checkpoint: transformers loads every tensor of the standard shape (and renames legacy
    names as it does), the layers are resized to the recorded shapes, then the resized layers' tensors
    are read from the checkpoint, each required to be there with that shape."""
    import torch
    from safetensors import safe_open

    from .errors import PofaError
    from .structure import rebuild, resized_linears

    model = auto.from_pretrained(path, local_files_only=True, ignore_mismatched_sizes=True, **overrides)
    try:
        rebuild(model, structure)
    except ValueError as error:
        raise PofaError(f"{path}: {error}") from None
    resized = {f"{name}.{kind}": parameter for name, module in resized_linears(model)
               for kind, parameter in (("weight", module.weight), ("bias", module.bias)) if parameter is not None}
    tensors: dict[str, Any] = {}
    for file in sorted(Path(path).glob("model*.safetensors")):
        with safe_open(file, framework="pt") as f:
            tensors.update({key: f.get_tensor(key) for key in f.keys() if key in resized})
    with torch.no_grad():
        for key, parameter in resized.items():
            saved = tensors.get(key)
            if saved is None or saved.shape != parameter.shape:
                raise PofaError(f"{path}: the slimmed checkpoint has no {key} of shape {list(parameter.shape)} "
                                f"(its recorded {STRUCTURE_KEY} does not match)")
            parameter.copy_(saved)
    return model


def _has_head(path: str, num_labels: int) -> bool:
    """Whether a local checkpoint already is a task model with this many labels."""
    import json

    config = Path(path) / "config.json"
    if not config.is_file():
        return True  # a hub id: transformers reports what it initialised
    data = json.loads(config.read_text())
    task_head = task_of_architectures(data.get("architectures") or []) is not None
    return task_head and len(data.get("id2label") or {}) in (0, num_labels)


def quiet_transformers() -> None:
    """transformers' load reports and progress bars repeat what our log says; keep its warnings."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
