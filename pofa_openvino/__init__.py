"""pofa-openvino: Prune Once for All sparse transformers, from INC pruning to OpenVINO sparse inference.

Importing the package is light (no torch): the toolkit stages import their libraries when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DataError, PofaError, RecipeError, StageError
from .recipe import Recipe, load_recipe

if TYPE_CHECKING:
    from .pipeline import RunResult, run
    from .pretrain import prune_once

__all__ = ["DataError", "PofaError", "Recipe", "RecipeError", "RunResult", "StageError", "load_recipe", "prune_once",
           "run"]


def __getattr__(name: str) -> Any:
    if name in {"run", "RunResult"}:
        from . import pipeline

        return getattr(pipeline, name)
    if name == "prune_once":
        from .pretrain import prune_once

        return prune_once
    raise AttributeError(f"module 'pofa_openvino' has no attribute {name!r}")
