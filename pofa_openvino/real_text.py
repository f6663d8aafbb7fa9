"""Speed on real text, next to the fixed-length figures. Why: real requests are short (SST-2 dev's
median is ~25 tokens), so a figure at 128 padded tokens overstates the cost of each one, and how a
server batches them (sorted by length, asynchronously) decides what a CPU delivers. Measured per
engine of :mod:`.bench` on the same texts: batch 1 at each text's own length (latency percentiles and
sentences/s), length-sorted batches padded to their longest, and, for OpenVINO, those batches on
async requests with the THROUGHPUT hint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .measure import latency_summary
from .runtime.batching import pad

SORTED_BATCH = 32


def tokenize(tokenizer_dir: Path, texts: list[str], max_length: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """Each text alone, unpadded (1-D token arrays by input name), truncated at ``max_length``: what
    one request carries; and the tokenizer's pad id."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    rows = [{name: np.asarray(encoded[name][row], np.int64) for name in encoded} for row in range(len(texts))]
    return rows, tokenizer.pad_token_id or 0


def token_lengths(rows: list[dict[str, np.ndarray]]) -> dict[str, float]:
    lengths = np.array([len(row["input_ids"]) for row in rows])
    return {"median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)),
            "p99": float(np.percentile(lengths, 99)), "max": int(lengths.max()), "mean": float(lengths.mean())}


def measure(engine: Any, rows: list[dict[str, np.ndarray]], duration_s: float, pad_token_id: int = 0
            ) -> dict[str, Any]:
    """The real-text figures of one engine: every phase runs at least one full pass over the texts."""
    names = engine.input_names
    singles = [engine.runner({n: row[n][None] for n in names}) for row in rows]
    times = _passes(singles, duration_s)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    batches = [pad([rows[i] for i in order[start:start + SORTED_BATCH]], names, pad_token_id)
               for start in range(0, len(rows), SORTED_BATCH)]
    batch_times = _passes([engine.runner(batch) for batch in batches], duration_s)
    passes = len(batch_times) / len(batches)
    real_tokens = sum(len(row["input_ids"]) for row in rows)
    figures = {"batch1": {**latency_summary(times), "sentences_per_s": len(times) / sum(times)},
               "sorted_batches": {"batch_size": SORTED_BATCH, "sentences_per_s": passes * len(rows) / sum(batch_times),
                                  "padding_share": 1 - real_tokens / sum(b["input_ids"].size for b in batches)}}
    if hasattr(engine, "async_batches"):
        figures["async"] = engine.async_batches(batches, duration_s, len(rows))
    return figures


def _passes(runners: list[Any], duration_s: float) -> list[float]:
    """Seconds of each run, cycling through ``runners`` for ``duration_s`` and at least one whole pass,
    after one untimed pass (each new shape's first run pays for compiling its kernels)."""
    for runner in runners:
        runner()
    times: list[float] = []
    end = time.perf_counter() + duration_s
    while len(times) < len(runners) or time.perf_counter() < end:
        runner = runners[len(times) % len(runners)]
        began = time.perf_counter()
        runner()
        times.append(time.perf_counter() - began)
    return times
