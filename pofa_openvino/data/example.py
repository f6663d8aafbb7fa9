"""One labelled example of sequence classification. Why its own module: the file readers, the hub
loader and the built-in generator all make them, and none of them should import another to do so."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    texts: tuple[str, ...]  # one text, or a pair
    label: int              # class id: the index into the task's label names
