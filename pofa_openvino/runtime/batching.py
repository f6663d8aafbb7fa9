"""Dynamic batching for the server: texts that arrive together are tokenized in one call and run as
one batch, grouped by token length so padding stays small. Why: a sentence alone costs nearly the
per-call overhead of a batch, and padding short text to a fixed length wastes most of the work
(measured: SST-2 sentences are ~25 tokens, a 128-token pad costs over 2x).

Each of the batcher's worker threads (one per infer request) takes a batch from the queue, tokenizes,
infers and post-processes it, and hands the results to the event loop in one call: one thread hop
each way per batch, and the event loop does no per-batch work (profiled: with single-sentence
requests, every hop and every per-request numpy call on the loop came out of inference's CPU)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import PofaError


class Overloaded(PofaError):
    """More sequences waiting than the server admits (HTTP 503: try again later)."""


# Texts (and their second texts) to the tokenizer's outputs by name, padded to the longest text, in
# one call; it must be safe to call from several threads at once.
Tokenize = Callable[[list[str], list[str] | None], dict[str, np.ndarray]]
# A batch's outputs by name and its token ids to one result per row (on a worker thread).
Finish = Callable[[dict[str, np.ndarray], np.ndarray], list[Any]]


@dataclass
class Pending:
    """One request's texts on their way: its future gets every row's result in order, or the first error."""

    future: asyncio.Future
    rows: list[Any]
    left: int


@dataclass
class Sequence:
    """One text (and its second text), and where its result goes."""

    text: str
    pair: str | None
    pending: Pending
    index: int
    arrived: float = field(default_factory=time.monotonic)


def length_groups(lengths: list[int], max_batch: int) -> list[list[int]]:
    """Indices in groups to run together: sorted by length, at most ``max_batch`` each, and no
    sequence padded to more than twice its length (plus 8 tokens, so short ones still batch)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for index in order:
        group = groups[-1] if groups else None
        if group is None or len(group) >= max_batch or lengths[index] > 2 * lengths[group[0]] + 8:
            groups.append([index])
        else:
            group.append(index)
    return groups


def pad(rows: list[dict[str, np.ndarray]], names: list[str], pad_token_id: int) -> dict[str, np.ndarray]:
    """Unpadded token rows (1-D arrays by input name) as one batch, padded on the right to the longest
    row as the tokenizer pads (``pad_token_id`` in the ids, 0 in the mask and segment ids)."""
    width = max(len(row["input_ids"]) for row in rows)
    batch = {}
    for name in names:
        filler = pad_token_id if name == "input_ids" else 0
        batch[name] = np.full((len(rows), width), filler, dtype=rows[0][name].dtype)
        for padded, row in zip(batch[name], rows, strict=True):
            padded[:len(row[name])] = row[name]
    return batch


class DynamicBatcher:
    """Runs waiting sequences whenever a worker is free: all of them up to ``max_batch``, after giving
    the oldest up to ``max_delay_ms`` for company, in length groups one after another. Each request's
    future gets each text's result from ``finish``, or the error that stopped its batch (a tokenizer
    failure is retried text by text, so one bad text fails only its own request). At most
    ``max_queue`` sequences wait or run at once: beyond that :meth:`submit` raises :class:`Overloaded`
    at once rather than letting latency grow unbounded. There are ``jobs`` workers, each with its own
    infer request (default: OpenVINO's optimal number for the compiled model)."""

    def __init__(self, compiled: Any, tokenize: Tokenize, finish: Finish, max_batch: int = 32,
                 max_delay_ms: float = 2.0, max_queue: int = 256, jobs: int = 0):
        self.tokenize, self.finish = tokenize, finish
        self.names = [i.get_any_name() for i in compiled.inputs]
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay_ms / 1000, max_queue
        self.jobs = jobs or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._requests = [compiled.create_infer_request() for _ in range(self.jobs)]
        self.admitted = 0
        self.stats = {"batches": 0, "sequences": 0, "tokens": 0, "padded_tokens": 0}
        self._waiting: deque[Sequence] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._idle = 0  # workers waiting for a batch
        self._workers: list[threading.Thread] = []
        self._loop: Any = None

    @property
    def running(self) -> bool:
        return bool(self._workers) and not self._closing

    def start(self) -> None:
        """Start the workers; results go to the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._workers = [threading.Thread(target=self._work, args=(request,), name=f"infer-{number}", daemon=True)
                         for number, request in enumerate(self._requests)]
        for worker in self._workers:
            worker.start()

    def submit(self, texts: list[str], pairs: list[str] | None = None) -> asyncio.Future:
        """Queue a request's texts; the future gets each text's result in the order given.
        Cancelling it takes the texts not yet computed out of the work."""
        if not self.running:
            raise Overloaded("the server is not running inference (starting or shutting down)")
        if self.admitted + len(texts) > self.max_queue:
            raise Overloaded(f"{self.admitted} sequences already queued (limit {self.max_queue}); retry shortly")
        self.admitted += len(texts)
        pending = Pending(self._loop.create_future(), [None] * len(texts), len(texts))
        pending.future.add_done_callback(partial(self._release, len(texts)))
        sequences = [Sequence(text, pairs[i] if pairs is not None else None, pending, i)
                     for i, text in enumerate(texts)]
        with self._ready:
            self._waiting.extend(sequences)
            self._ready.notify()
        return pending.future

    def _release(self, count: int, future: asyncio.Future) -> None:
        self.admitted -= count

    def _work(self, request: Any) -> None:
        """A worker thread: batches until :meth:`close`, each one's results to the loop in one call."""
        while (batch := self._take()) is not None:
            results, counts = self._compute(request, batch)
            self._loop.call_soon_threadsafe(self._deliver, results, counts)

    def _take(self) -> list[Sequence] | None:
        """Wait for a first sequence, then until ``max_batch`` wait or the oldest has waited
        ``max_delay``; then take the waiting sequences up to ``max_batch``, shared evenly with the
        other idle workers (None once closing and none wait). A request cancelled meanwhile (its
        client went away) is skipped. Why share: requests answered together come back together,
        and a worker taking them all left the others idle (measured: 8 closed-loop clients on 2
        streams kept about one core busy of two)."""
        with self._ready:
            self._idle += 1
            try:
                while True:
                    while not self._waiting and not self._closing:
                        self._ready.wait()
                    if not self._waiting:
                        return None
                    deadline = self._waiting[0].arrived + self.max_delay
                    while (0 < len(self._waiting) < self.max_batch and not self._closing
                           and (left := deadline - time.monotonic()) > 0):
                        self._ready.wait(left)
                    share = min(self.max_batch, -(-len(self._waiting) // self._idle))
                    taken = [self._waiting.popleft() for _ in range(min(share, len(self._waiting)))]
                    if self._waiting:
                        self._ready.notify()  # the rest is another idle worker's
                    batch = [s for s in taken if not s.pending.future.done()]
                    if batch:
                        return batch
            finally:
                self._idle -= 1

    def _compute(self, request: Any, batch: list[Sequence]
                 ) -> tuple[list[tuple[Sequence, Any, BaseException | None]], dict[str, int]]:
        """Each sequence's result (or error) and the batch's counts: tokenized in one call, then run in
        length groups. If tokenizing fails, each text is tried alone."""
        counts = dict.fromkeys(self.stats, 0)
        try:
            tokens = self.tokenize([s.text for s in batch], [s.pair for s in batch] if batch[0].pair is not None
                                   else None)
            lengths = tokens["attention_mask"].sum(axis=1).tolist()
        except Exception as exc:  # noqa: BLE001  (find the texts at fault: each alone)
            if len(batch) == 1:
                return [(batch[0], None, exc)], counts
            results: list[tuple[Sequence, Any, BaseException | None]] = []
            for sequence in batch:
                alone, alone_counts = self._compute(request, [sequence])
                results += alone
                counts = {key: counts[key] + alone_counts[key] for key in counts}
            return results, counts
        results = []
        for group in length_groups(lengths, self.max_batch):
            width = max(lengths[i] for i in group)
            try:
                inputs = {name: tokens[name][group, :width] for name in self.names}
                rows = self.finish(_infer(request, inputs), inputs["input_ids"])
            except Exception as exc:  # noqa: BLE001  (the group's requests get the error; the server goes on)
                results += [(batch[i], None, exc) for i in group]
                continue
            results += [(batch[i], row, None) for i, row in zip(group, rows, strict=True)]
            for key, value in (("batches", 1), ("sequences", len(group)), ("tokens", sum(lengths[i] for i in group)),
                               ("padded_tokens", len(group) * width)):
                counts[key] += value
        return results, counts

    def _deliver(self, results: list[tuple[Sequence, Any, BaseException | None]], counts: dict[str, int]) -> None:
        """On the event loop: each result to its request's future (a cancelled one takes nothing)."""
        for key, value in counts.items():
            self.stats[key] += value
        for sequence, row, error in results:
            pending = sequence.pending
            if pending.future.done():
                continue
            if error is not None:
                pending.future.set_exception(error)
                continue
            pending.rows[sequence.index] = row
            pending.left -= 1
            if not pending.left:
                pending.future.set_result(pending.rows)

    async def close(self) -> None:
        """Finish what was admitted, then stop the workers."""
        while self.admitted:
            await asyncio.sleep(0.01)
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        for worker in self._workers:
            await asyncio.to_thread(worker.join)


def _infer(request: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A synchronous inference (OpenVINO releases the GIL); the outputs copied out of the request's tensors."""
    results = request.infer(inputs)
    return {output.get_any_name(): np.array(value) for output, value in results.items()}
