"""Progress for long stages: a rich bar on a terminal, plain log lines elsewhere (CI, files)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("pofa_openvino")


class _LogLines:
    """Logs ``description: step/total metrics`` every ``every`` steps and at the end."""

    def __init__(self, description: str, total: int, every: int, done: int):
        self.description, self.total, self.every, self.done = description, total, max(1, every), done

    def advance(self, steps: int = 1, **metrics: float) -> None:
        self.done += steps
        if self.done % self.every == 0 or self.done == self.total:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            log.info("%s: %d/%d %s", self.description, self.done, self.total, shown)


class _RichBar:
    def __init__(self, bar, task):
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1, **metrics: float) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self.bar.update(self.task, advance=steps, metrics=shown)


@contextmanager
def progress(description: str, total: int, every: int = 10, done: int = 0) -> Iterator[_LogLines | _RichBar]:
    """Yield an object with ``advance(steps=1, **metrics)``; ``done`` steps are already behind (a resume)."""
    if not sys.stderr.isatty():
        yield _LogLines(description, total, every, done)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"))
    with Progress(*columns, transient=False) as bar:
        yield _RichBar(bar, bar.add_task(description, total=total, completed=done, metrics=""))
