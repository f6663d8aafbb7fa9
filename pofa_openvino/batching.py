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
    and its token ids. At most ``max_queue`` sequences wait or run at once: beyond that
    :meth:`infer` raises :class:`Overloaded` at once rather than letting latency grow unbounded."""

    def __init__(self, compiled: Any, tokenize: Tokenize, pad_token_id: int, max_batch: int = 32,
                 max_delay_ms: float = 2.0, max_queue: int = 256, jobs: int = 0):
        import openvino as ov

        self.tokenize = tokenize
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        self.names = [i.get_any_name() for i in compiled.inputs]
        self.pad_token_id, self.max_batch, self.max_delay = pad_token_id, max_batch, max_delay_ms / 1000
        self.max_queue, self.admitted = max_queue, 0
        self.requests = ov.AsyncInferQueue(compiled, jobs)
        self.requests.set_callback(self._finished)
        self.stats = {"batches": 0, "sequences": 0, "tokens": 0, "padded_tokens": 0}
        self._waiting: deque[tuple[float, Sequence]] = deque()
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(len(self.requests))
        self._loop: Any = None
        self._task: asyncio.Task | None = None

    @property
    def jobs(self) -> int:
        return len(self.requests)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def infer(self, texts: list[str], pairs: list[str] | None = None
                    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Each text's outputs (its row of every output) and token ids, in the order given."""
        if not self.running:
            raise Overloaded("the server is not running inference (starting or shutting down)")
        if self.admitted + len(texts) > self.max_queue:
            raise Overloaded(f"{self.admitted} sequences already queued (limit {self.max_queue}); retry shortly")
        self.admitted += len(texts)
        sequences = [Sequence(text, pairs[i] if pairs is not None else None, self._loop.create_future())
                     for i, text in enumerate(texts)]
        now = self._loop.time()
        self._waiting.extend((now, s) for s in sequences)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(s.done for s in sequences)))
        finally:
            self.admitted -= len(texts)

    async def _run(self) -> None:
        while True:
            await self._free.acquire()
            while not self.requests.is_ready():  # the callback ran; OpenVINO marks its request idle just after
                await asyncio.sleep(0)
            await self._gather()
            # A client that went away cancelled its futures: its texts are not computed.
            self._waiting = deque(item for item in self._waiting if not item[1].done.done())
            if not self._waiting:
                self._free.release()
                continue
            batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_batch))]
            if not await self._tokenized([s for _, s in batch]):
                self._free.release()
                continue
            groups = length_groups([s.length for _, s in batch], self.max_batch)
            first = next(g for g in groups if 0 in g)
            self._waiting.extendleft(reversed([batch[i] for i in sorted(set(range(len(batch))) - set(first))]))
            self._start([batch[i][1] for i in first])

    async def _tokenized(self, sequences: list[Sequence]) -> bool:
        """Tokenize the sequences that are not yet, in one call on the tokenizer thread; a failure goes
        to their requests (and False is returned: nothing to run)."""
        new = [s for s in sequences if s.tokens is None]
        if not new:
            return True
        pairs = [s.pair for s in new] if new[0].pair is not None else None
        try:
            rows = await self._loop.run_in_executor(self._tokenizer_thread, self.tokenize, [s.text for s in new],
                                                    pairs)
        except Exception as exc:  # noqa: BLE001  (a tokenizer failure is the requests' error, not the server's end)
            for sequence in new:
                if not sequence.done.done():
                    sequence.done.set_exception(exc)
            return False
        for sequence, tokens in zip(new, rows, strict=True):
            sequence.tokens = tokens
        return True

    async def _gather(self) -> None:
        """Wait for a first sequence, then until ``max_batch`` wait or the oldest has waited ``max_delay``."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._waiting[0][0] + self.max_delay
        while len(self._waiting) < self.max_batch and (left := deadline - self._loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _start(self, group: list[Sequence]) -> None:
        inputs = pad([s.tokens for s in group], self.names, self.pad_token_id)
        for key, value in (("batches", 1), ("sequences", len(group)), ("tokens", sum(s.length for s in group)),
                           ("padded_tokens", inputs["input_ids"].size)):
            self.stats[key] += value
        try:
            self.requests.start_async(inputs, (group, inputs["input_ids"]))
        except RuntimeError as exc:
            self._free.release()
            for sequence in group:
                if not sequence.done.done():  # a cancelled future takes no exception
                    sequence.done.set_exception(exc)

    def _finished(self, request: Any, userdata: tuple[list[Sequence], np.ndarray]) -> None:
        """OpenVINO's callback, on its own thread: copy the outputs, hand them to the event loop."""
        group, ids = userdata
        outputs = {output.get_any_name(): np.array(value) for output, value in request.results.items()}
        self._loop.call_soon_threadsafe(self._deliver, group, outputs, ids)

    def _deliver(self, group: list[Sequence], outputs: dict[str, np.ndarray], ids: np.ndarray) -> None:
        self._free.release()
        for row, sequence in enumerate(group):
            if not sequence.done.done():  # a client that went away cancelled its future
                sequence.done.set_result(({name: value[row] for name, value in outputs.items()}, ids[row]))

    async def close(self) -> None:
        """Finish what was admitted, then stop."""
        while self.admitted:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.requests.wait_all)
        self._tokenizer_thread.shutdown()
