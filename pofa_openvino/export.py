"""OpenVINO IR export through optimum-intel (the exporter that works with transformers 5), written as
a directory optimum-intel loads: ``openvino_model.xml/.bin``, ``config.json`` and the tokenizer."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .runtime.tasks import get_task

log = logging.getLogger(__name__)


def export_trained(model: Any, out_dir: Path, task: str) -> None:
    """IR of an in-memory torch model, e.g. NNCF's fake-quantized QAT model (FakeQuantize + INT8 weights);
    ``ov.convert_model`` and ``torch.export`` cannot trace those, optimum-intel's exporter can."""
    from optimum.exporters.openvino import export_from_model

    model.eval()
    with _quiet():
        export_from_model(model, out_dir, task=task)


def export_ir(model_dir: str, out_dir: Path, task: str) -> None:
    """FP32 IR with dynamic batch and sequence length, weights kept in FP32 (parity needs them)."""
    import optimum.intel
    from transformers import AutoTokenizer

    from .modeling import load_model, structure_of

    if structure_of(model_dir) is not None:  # per-layer shapes transformers' loader cannot rebuild
        export_trained(load_model(model_dir, task), out_dir, task)
    else:
        with _quiet():
            model = getattr(optimum.intel, get_task(task).openvino_class).from_pretrained(model_dir, export=True,
                                                                                          compile=False)
        model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    log.info("exported %s to OpenVINO IR: %s", Path(model_dir).name, out_dir)


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's tracing warnings are about torch and transformers internals, not the user's model."""
    from .modeling import quiet_transformers

    quiet_transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
