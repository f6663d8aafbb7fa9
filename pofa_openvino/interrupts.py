"""Ctrl-C that is never lost. Python swallows a KeyboardInterrupt raised while a finalizer (``__del__``,
a weakref callback) runs and prints "Exception ignored"; so the handler also records the request and
long loops re-raise it at their next step."""

from __future__ import annotations

import signal
from typing import Any

_requested = False


def install() -> None:
    """Route SIGINT through :func:`_handler` (the CLI does this; library users keep their own)."""
    signal.signal(signal.SIGINT, _handler)


def _handler(signum: int, frame: Any) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed, even if the first one was swallowed."""
    if _requested:
        raise KeyboardInterrupt
