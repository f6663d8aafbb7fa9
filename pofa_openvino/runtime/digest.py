"""File digests (stdlib only): how a bundle's manifest records its files and a run its inputs. Apart from
:mod:`.bundle` so that the toolkit's run directory, which the CLI imports on start-up, does not load numpy."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
