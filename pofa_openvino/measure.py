"""How to time code on a CPU that may be shared: timed runs, their latency summary, back-to-back
throughput, the share of the CPU other processes took meanwhile and the peak memory of a block.
Why apart from :mod:`.bench`: the real-text figures, the report's verdict on a busy machine and the
load test measure with the same rules. Imports only the standard library and numpy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BUSY = 0.1  # above this share of the CPU used by other processes, a benchmark is flagged unreliable


def timed_runs(infer: Callable[[], Any], duration_s: float, min_runs: int) -> list[float]:
    """Seconds of single synchronous runs, for ``duration_s`` and at least ``min_runs`` runs."""
    times: list[float] = []
    end = time.perf_counter() + duration_s
    while len(times) < min_runs or time.perf_counter() < end:
        began = time.perf_counter()
        infer()
        times.append(time.perf_counter() - began)
    return times


def latency_summary(times: list[float]) -> dict[str, Any]:
    """Median, p90, p99 and mean in milliseconds."""
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "runs": len(times)}


def sequential_throughput(infer: Callable[[], Any], duration_s: float, batch_size: int) -> dict[str, Any]:
    """Back-to-back synchronous runs: what an engine without async requests delivers."""
    infer()
    count, began = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - began < duration_s:
        infer()
        count += 1
    return {"items_per_s": count * batch_size / (time.perf_counter() - began), "requests": 1, "mode": "sequential"}


class OtherLoad:
    """The share of the machine's CPU time that other processes used while the block ran (Linux
    ``/proc/stat`` minus this process's own CPU time); None where the OS cannot tell. A benchmark that
    shared the CPU is not a measurement of the engines, and is flagged as such."""

    def __enter__(self) -> OtherLoad:
        self.share: float | None = None
        self._start = _cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_seconds()
        if self._start is not None and end is not None and end[0] > self._start[0]:
            total, busy, own = (b - a for a, b in zip(self._start, end, strict=True))
            self.share = max(0.0, (busy - own) / total)


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(all CPUs' time, their busy time, this process's CPU time), in seconds."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return sum(fields[:8]) / tick, (sum(fields[:8]) - fields[3] - fields[4]) / tick, own.user + own.system


class PeakMemory:
    """Peak resident memory of this process inside the block (Linux: VmHWM, reset through clear_refs),
    and how much that is above the resident memory at its start. None where the OS cannot tell."""

    def __enter__(self) -> PeakMemory:
        self.start_mb, self.peak_mb = _status_mb("VmRSS"), None
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._resettable = True
        except OSError:
            self._resettable = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._resettable:
            self.peak_mb = _status_mb("VmHWM")

    @property
    def added_mb(self) -> float | None:
        return None if self.peak_mb is None or self.start_mb is None else self.peak_mb - self.start_mb


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
