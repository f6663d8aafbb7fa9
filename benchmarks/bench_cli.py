"""What the benchmark scripts' command lines share (stdlib only: the peers venv imports it too)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

RUNS = Path(__file__).resolve().parent.parent / "runs" / "bench"


def absolute(path: str) -> Path:
    """``--runs`` as an absolute path: the scripts hand run paths to recipes, which resolve a relative
    path against the recipe file's directory, not the working directory."""
    return Path(path).resolve()


def show_logs() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def runs_arguments(description: str) -> argparse.Namespace:
    """``--runs`` (where the benchmark runs live) and ``--duration`` (seconds per variant and length);
    the logs are shown."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=absolute, default=RUNS)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per variant and length")
    args = parser.parse_args()
    show_logs()
    return args
