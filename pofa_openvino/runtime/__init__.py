"""The runtime: what an edge box runs with the base install alone (openvino, openvino-tokenizers, numpy).

- :mod:`.model`: an IR compiled for the CPU with its ``runtime_config.json``, and the executed kernel
  types that show whether sparse weight decompression ran;
- :mod:`.tasks`: the task registry (heads, outputs, text inputs) that bundles and the toolkit share;
- :mod:`.bundle`: the bundle format: open, verify, predict, safe extraction of an archive;
- :mod:`.digest`: file digests (stdlib), shared by bundle manifests and the toolkit's run directory;
- :mod:`.ovms`: a bundle as an OpenVINO Model Server repository of one strings-in graph;
- :mod:`.overwrite`: the one overwrite policy of every directory the tool writes;
- :mod:`.serve` over :mod:`.oip` and :mod:`.batching`: the Open Inference Protocol server (the
  ``serve`` extra: Starlette and uvicorn, imported when serving).

Its modules import only the standard library, openvino, openvino_tokenizers, numpy,
:mod:`pofa_openvino.errors` and each other (a test holds them to it); the toolkit imports from here,
never the reverse. Importing the package loads none of them: names are resolved on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundle import Bundle, BundleError, verify
    from .model import SparseModel

__all__ = ["Bundle", "BundleError", "SparseModel", "verify"]


def __getattr__(name: str) -> Any:
    """``from pofa_openvino.runtime import SparseModel`` (as the model cards say) without importing the rest."""
    if name == "SparseModel":
        from .model import SparseModel

        return SparseModel
    if name in {"Bundle", "BundleError", "verify"}:
        from . import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'pofa_openvino.runtime' has no attribute {name!r}")
