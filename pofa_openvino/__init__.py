"""pofa-openvino: Prune Once for All sparse transformers, from INC pruning to OpenVINO sparse inference.

Two halves: :mod:`pofa_openvino.runtime` (the base install: a bundle or an IR run with OpenVINO alone)
and the toolkit (the ``compress`` extra: recipe, pipeline and stages). Importing the package loads
neither: the names below are resolved on first use, so an edge box never loads the recipe schema
(pydantic, PyYAML) and the toolkit stages import their libraries when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DataError, PofaError, RecipeError, StageError

if TYPE_CHECKING:
    from .pipeline import RunResult, run
    from .pretrain import prune_once
    from .recipe import Recipe, load_recipe

__all__ = ["DataError", "PofaError", "Recipe", "RecipeError", "RunResult", "StageError", "load_recipe", "prune_once",
           "run"]


def __getattr__(name: str) -> Any:
    if name in {"run", "RunResult"}:
        from . import pipeline

        return getattr(pipeline, name)
    if name in {"Recipe", "load_recipe"}:
        from . import recipe

        return getattr(recipe, name)
    if name == "prune_once":
        from .pretrain import prune_once

        return prune_once
    raise AttributeError(f"module 'pofa_openvino' has no attribute {name!r}")
