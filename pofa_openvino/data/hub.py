"""Hub datasets through ``datasets``, by hub id or a local directory laid out like the hub repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_hub_dataset(path: str, name: str | None = None) -> Any:
    """``datasets.load_dataset(path, name)``. A local copy is re-read every time: ``datasets`` keys its
    cache on the directory's layout rather than its contents and would serve stale rows after an edit."""
    import datasets

    if not Path(path).is_dir():
        return datasets.load_dataset(path, name)
    return datasets.load_dataset(str(Path(path).resolve()), name, download_mode="force_redownload",
                                 verification_mode="no_checks")
