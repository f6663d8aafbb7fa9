"""What a result was produced with: the installed library versions and the machine. Why one module:
the run manifest, the benchmark and the bundle manifest each record them, and the lists of
distributions they name belong side by side."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from importlib import metadata
from typing import Any

# What a bundle's manifest pins: the base install, all an edge box runs.
RUNTIME_LIBRARIES = ("pofa-openvino", "openvino", "openvino-tokenizers", "numpy")
# What a benchmark's figures depend on.
BENCHMARK_LIBRARIES = ("pofa-openvino", "openvino", "torch", "transformers", "nncf", "numpy")
# What a run's manifest records: the whole toolkit.
RUN_LIBRARIES = ("pofa-openvino", "openvino", "openvino-tokenizers", "torch", "transformers", "neural-compressor",
                 "nncf", "optimum-intel", "datasets", "numpy")
# The instruction sets the INT8, BF16 and sparse kernels depend on, by the /proc/cpuinfo flags that show them.
_FLAGS = {"amx": ("amx_tile", "amx_int8"), "amx_bf16": ("amx_bf16",), "avx512_vnni": ("avx512_vnni",),
          "avx512_bf16": ("avx512_bf16",), "avx512f": ("avx512f",), "avx2": ("avx2",)}


def versions(names: Iterable[str] = BENCHMARK_LIBRARIES) -> dict[str, str | None]:
    """Installed versions by distribution name (None when not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine(cores: int) -> dict[str, Any]:
    """CPU model, cores used and the instruction sets the INT8/BF16/sparse kernels depend on."""
    from .runtime.model import cpu_info

    model, flags = cpu_info()
    return {"cpu": model, "cores_used": cores, "logical_cpus": os.cpu_count(), "os": platform.platform(),
            "flags": {name: set(needed) <= flags for name, needed in _FLAGS.items()}}
