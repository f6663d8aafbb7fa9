"""Dynamic batching for the server: texts that arrive together are tokenized in one call and run as
one batch on OpenVINO's ``AsyncInferQueue``, grouped by token length so padding stays small. Why: a
sentence alone costs nearly the per-call overhead of a batch, and padding short text to a fixed length
wastes most of the work (measured: SST-2 sentences are ~25 tokens, a 128-token pad costs over 2x).
Tokenizing per request on the event loop took half of its time under load (profiled), so the
tokenizer runs once per batch, on a worker thread."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PofaError


class Overloaded(PofaError):
    """More sequences waiting than the server admits (HTTP 503: try again later)."""


Tokens = dict[str, np.ndarray]  # one text's unpadded token arrays by input name
# Texts (and their second texts) to one token row each, in one call.
Tokenize = Callable[[list[str], list[str] | None], list[Tokens]]


@dataclass
class Sequence:
    """One text (and its second text), its tokens once the batcher has tokenized it, and where its
    outputs go."""

    text: str
    pair: str | None
    done: asyncio.Future
    arrived: float  # the event loop's clock
    tokens: Tokens | None = None

    @property
    def length(self) -> int:
        return len(self.tokens["input_ids"])


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
    """Runs waiting sequences whenever an infer request is free: all of them up to ``max_batch``,
    after giving the oldest up to ``max_delay_ms`` for company, in length groups (the oldest one's
    group first, the rest wait at the front). Each sequence's future gets its row of every output
    and its token ids, or the error that stopped its batch. At most ``max_queue`` sequences wait or
    run at once: beyond that :meth:`infer` raises :class:`Overloaded` at once rather than letting
    latency grow unbounded. Each batch runs synchronously on one of ``jobs`` infer requests (default:
    OpenVINO's optimal number for the compiled model), each on its own worker thread, so a failed
    inference reaches its requests instead of leaving them waiting."""

    def __init__(self, compiled: Any, tokenize: Tokenize, pad_token_id: int, max_batch: int = 32,
                 max_delay_ms: float = 2.0, max_queue: int = 256, jobs: int = 0):
        self.tokenize = tokenize
        self.names = [i.get_any_name() for i in compiled.inputs]
        self.pad_token_id, self.max_batch, self.max_delay = pad_token_id, max_batch, max_delay_ms / 1000
        self.max_queue, self.admitted = max_queue, 0
        jobs = jobs or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._idle = [compiled.create_infer_request() for _ in range(jobs)]
        self._inference = ThreadPoolExecutor(jobs, thread_name_prefix="infer")
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        self.stats = {"batches": 0, "sequences": 0, "tokens": 0, "padded_tokens": 0}
        self._waiting: deque[Sequence] = deque()
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(jobs)
        self._batches: set[asyncio.Task] = set()
        self._loop: Any = None
        self._task: asyncio.Task | None = None
        self.jobs = jobs

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())
        self._task.add_done_callback(self._stopped)

    async def infer(self, texts: list[str], pairs: list[str] | None = None
                    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Each text's outputs (its row of every output) and token ids, in the order given."""
        if not self.running:
            raise Overloaded("the server is not running inference (starting or shutting down)")
        if self.admitted + len(texts) > self.max_queue:
            raise Overloaded(f"{self.admitted} sequences already queued (limit {self.max_queue}); retry shortly")
        self.admitted += len(texts)
        now = self._loop.time()
        sequences = [Sequence(text, pairs[i] if pairs is not None else None, self._loop.create_future(), now)
                     for i, text in enumerate(texts)]
        self._waiting.extend(sequences)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(s.done for s in sequences)))
        finally:
            for sequence in sequences:  # a failed or cancelled request takes its other texts out of the queue
                sequence.done.cancel()
            self.admitted -= len(texts)

    async def _run(self) -> None:
        while True:
            await self._free.acquire()
            await self._gather()
            # A client that went away cancelled its futures: its texts are not computed.
            self._waiting = deque(s for s in self._waiting if not s.done.done())
            if not self._waiting:
                self._free.release()
                continue
            batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_batch))]
            batch = await self._tokenized(batch)
            if not batch:
                self._free.release()
                continue
            groups = length_groups([s.length for s in batch], self.max_batch)
            first = next(g for g in groups if 0 in g)
            self._waiting.extendleft(reversed([batch[i] for i in sorted(set(range(len(batch))) - set(first))]))
            task = self._loop.create_task(self._compute([batch[i] for i in first]))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _tokenized(self, sequences: list[Sequence]) -> list[Sequence]:
        """The sequences with their tokens: those without are tokenized in one call on the tokenizer
        thread. If that call fails, each is tried alone, so one bad text fails only its own request."""
        new = [s for s in sequences if s.tokens is None]
        if new:
            try:
                rows = await self._tokenize(new)
            except Exception:  # noqa: BLE001  (find the texts at fault, below)
                rows = []
                for sequence in new:
                    try:
                        rows += await self._tokenize([sequence])
                    except Exception as exc:  # noqa: BLE001  (a tokenizer failure is its request's error)
                        _fail([sequence], exc)
                        rows.append(None)
            for sequence, tokens in zip(new, rows, strict=True):
                sequence.tokens = tokens
        return [s for s in sequences if s.tokens is not None and not s.done.done()]

    async def _tokenize(self, sequences: list[Sequence]) -> list[Tokens]:
        pairs = [s.pair for s in sequences] if sequences[0].pair is not None else None
        rows = await self._loop.run_in_executor(self._tokenizer_thread, self.tokenize, [s.text for s in sequences],
                                                pairs)
        if len(rows) != len(sequences):
            raise RuntimeError(f"the tokenizer gave {len(rows)} rows for {len(sequences)} texts")
        return rows

    async def _gather(self) -> None:
        """Wait for a first sequence, then until ``max_batch`` wait or the oldest has waited ``max_delay``."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._waiting[0].arrived + self.max_delay
        while len(self._waiting) < self.max_batch and (left := deadline - self._loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    async def _compute(self, group: list[Sequence]) -> None:
        """One batch on an idle infer request (a worker thread); its outputs, or its error, to its futures."""
        request = self._idle.pop()
        try:
            inputs = pad([s.tokens for s in group], self.names, self.pad_token_id)
            for key, value in (("batches", 1), ("sequences", len(group)), ("tokens", sum(s.length for s in group)),
                               ("padded_tokens", inputs["input_ids"].size)):
                self.stats[key] += value
            outputs = await self._loop.run_in_executor(self._inference, _infer, request, inputs)
        except Exception as exc:  # noqa: BLE001  (the batch's requests get the error; the server goes on)
            _fail(group, exc)
            return
        finally:
            self._idle.append(request)
            self._free.release()
        for row, sequence in enumerate(group):
            if not sequence.done.done():  # a client that went away cancelled its future
                sequence.done.set_result(({name: value[row] for name, value in outputs.items()},
                                          inputs["input_ids"][row]))

    def _stopped(self, task: asyncio.Task) -> None:
        """If the batching loop ever dies, no request waits for it: each gets the reason."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            _fail(list(self._waiting), Overloaded(f"the batcher stopped ({type(error).__name__}: {error})"))

    async def close(self) -> None:
        """Finish what was admitted, then stop."""
        while self.admitted:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        await asyncio.gather(*([self._task] if self._task else []), *self._batches, return_exceptions=True)
        self._inference.shutdown()
        self._tokenizer_thread.shutdown()


def _infer(request: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A synchronous inference on a worker thread; the outputs copied out of the request's tensors."""
    results = request.infer(inputs)
    return {output.get_any_name(): np.array(value) for output, value in results.items()}


def _fail(sequences: list[Sequence], error: BaseException) -> None:
    for sequence in sequences:
        if not sequence.done.done():  # a cancelled future takes no exception
            sequence.done.set_exception(error)
