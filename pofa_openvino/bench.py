"""Latency, throughput, memory, compile time and size of every variant of one model, measured in one
process with the same inputs and threads (latency in rounds interleaved across the variants), so that
the ratios between them mean something. Ratios are computed from the recorded figures, never typed in.

Importing this module is light (stdlib and numpy): the peer benchmarks load it in a venv of their own.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .measure import BUSY, OtherLoad, PeakMemory, latency_summary, sequential_throughput, timed_runs
from .provenance import BENCHMARK_LIBRARIES as VERSIONS
from .provenance import machine, versions
from .runtime.tasks import CLASSIFICATION

log = logging.getLogger(__name__)

LABELS = {
    "torch_fp32": "PyTorch FP32 (eager)",
    "openvino_fp32": "OpenVINO FP32 (f32 hint)",
    "openvino_default": "OpenVINO default precision",
    "openvino_int8": "OpenVINO INT8 (dense)",
    "openvino_int8_sparse": "OpenVINO INT8 + sparse decompression",
}
BASELINES = ("torch_fp32", "openvino_int8")
MAX_TEXTS = 1000  # real-text figures use at most this many texts, spread over the file


@dataclass(frozen=True)
class Settings:
    """What every variant is measured with. Each variant gets ``duration_s`` at every sequence length
    (split over ``rounds`` interleaved with the other variants, after ``warmup`` untimed runs; at least
    ``min_runs`` timed) and ``duration_s`` of throughput."""

    sequence_lengths: tuple[int, ...] = (32, 128, 384)
    batch_size: int = 1
    duration_s: float = 10.0
    threads: int | None = None
    warmup: int = 3
    min_runs: int = 10
    rounds: int = 5

    @property
    def cores(self) -> int:
        if self.threads:
            return self.threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    @property
    def throughput_length(self) -> int:
        """Throughput is measured once, at 128 tokens when asked for, else at the longest length."""
        return 128 if 128 in self.sequence_lengths else max(self.sequence_lengths)


@dataclass
class Variant:
    """One way to run the model: ``torch`` on a HF checkpoint, or ``openvino`` on an IR directory
    compiled with ``properties`` on top of its runtime config."""

    name: str
    engine: str
    path: Path
    task: str = CLASSIFICATION.name
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


def settings_from(section: Any) -> Settings:
    """Settings from a recipe's ``benchmark`` section (or the ``bench`` command's options)."""
    return Settings(sequence_lengths=tuple(section.sequence_lengths), batch_size=section.batch_size,
                    duration_s=section.duration_s, threads=section.threads)


def dummy_inputs(names: Iterable[str], batch_size: int, length: int, vocab_size: int, seed: int = 0
                 ) -> dict[str, np.ndarray]:
    """Random token ids with a full attention mask: timing does not depend on the words."""
    ids = np.random.default_rng(seed).integers(min(1000, vocab_size // 2), vocab_size, (batch_size, length))
    made = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones_like(ids, dtype=np.int64),
            "token_type_ids": np.zeros_like(ids, dtype=np.int64)}
    return {name: made[name] for name in names if name in made}


# --- the engines ------------------------------------------------------------------------------------

class _TorchEngine:
    files = ("*.safetensors", "pytorch_model*.bin")
    modules = ("torch", "transformers")

    def __init__(self, variant: Variant, settings: Settings):
        import inspect

        import torch

        from .modeling import load_model

        torch.set_num_threads(settings.cores)
        self.torch = torch
        self.model = load_model(str(variant.path), variant.task).eval()
        accepted = inspect.signature(self.model.forward).parameters
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
        self.precision = "f32"

    def runner(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        tensors = {name: self.torch.from_numpy(value) for name, value in inputs.items()}

        def infer() -> Any:
            with self.torch.inference_mode():
                return self.model(**tensors)

        return infer

    def throughput(self, inputs: dict[str, np.ndarray], duration_s: float, batch_size: int) -> dict[str, Any]:
        return sequential_throughput(self.runner(inputs), duration_s, batch_size)

    def describe(self) -> dict[str, Any] | None:
        return None


class _OpenVINOEngine:
    files = ("openvino_model.xml", "openvino_model.bin")
    modules = ("openvino",)

    def __init__(self, variant: Variant, settings: Settings):
        from .runtime.model import SparseModel

        self.threads = settings.cores
        self.model = SparseModel(variant.path, {**variant.properties, "INFERENCE_NUM_THREADS": self.threads,
                                                "PERFORMANCE_HINT": "LATENCY"})
        self.input_names = self.model.input_names
        self.precision = self.model.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.is_int8 = variant.name.startswith("openvino_int8")

    def runner(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        request = self.model.request
        return lambda: request.infer(inputs)

    def throughput(self, inputs: dict[str, np.ndarray], duration_s: float, batch_size: int) -> dict[str, Any]:
        """Async requests with the THROUGHPUT hint, as many as OpenVINO finds optimal."""
        return self.async_batches([inputs], duration_s, batch_size, key="items_per_s")

    def async_batches(self, batches: list[dict[str, np.ndarray]], duration_s: float, items_per_pass: int,
                      key: str = "sentences_per_s") -> dict[str, Any]:
        """``batches`` cycled on async requests with the THROUGHPUT hint (as many requests as OpenVINO
        finds optimal), for ``duration_s`` and at least one pass; ``items_per_pass`` items per pass."""
        import openvino as ov

        properties = {**self.model.properties, "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": self.threads}
        compiled = self.model.core.compile_model(self.model.model, "CPU", properties)
        requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, requests)
        for index in range(requests):
            queue.start_async(batches[index % len(batches)])
        queue.wait_all()
        count, began = 0, time.perf_counter()
        while count < max(requests, len(batches)) or time.perf_counter() - began < duration_s:
            queue.start_async(batches[count % len(batches)])  # blocks while every request is busy
            count += 1
        queue.wait_all()
        return {key: count / len(batches) * items_per_pass / (time.perf_counter() - began), "requests": requests,
                "streams": int(compiled.get_property("NUM_STREAMS")), "mode": "async, THROUGHPUT hint"}

    def describe(self) -> dict[str, Any] | None:
        """Executed kernel types of the INT8 variants: the proof of dense or sparse INT8."""
        return self.model.describe() if self.is_int8 else None


# Engine classes by name: ``(variant, settings)`` loads; ``input_names``, ``precision``, ``files`` (globs of
# what counts as model size), ``runner(inputs)``, ``throughput(inputs, seconds, batch)``, ``describe()``.
# The peer benchmarks add ONNX Runtime and DeepSparse here.
ENGINES: dict[str, Any] = {"torch": _TorchEngine, "openvino": _OpenVINOEngine}


# --- all variants ----------------------------------------------------------------------------------

def benchmark(variants: list[Variant], settings: Settings,
              verify: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
              texts: list[str] | None = None) -> dict[str, Any]:
    """Load every variant (each in its own memory window), then time them in interleaved rounds so that
    drift in the machine's load spreads over all of them, then throughput one after the other; then
    the ratios against PyTorch FP32 and OpenVINO INT8 (dense). ``verify`` gets the loaded engines by
    variant name before anything is timed: it raises to stop a benchmark whose outputs are wrong, and
    what it returns is recorded under ``checks``. With ``texts``, each variant is also measured on
    them (:mod:`.real_text`), beside its sentences/s at batch 1 padded to the throughput length."""
    from .errors import PofaError
    from .progress import progress

    if not variants:
        raise PofaError("nothing to benchmark: the target has no PyTorch checkpoint and no OpenVINO IR")
    _import_engines(variants)
    config = _model_config(variants)
    vocab, max_length = int(config.get("vocab_size", 30522)), int(config.get("max_position_embeddings", 512))
    lengths = tuple(n for n in settings.sequence_lengths if n <= max_length)
    if len(lengths) < len(settings.sequence_lengths):
        log.warning("sequence lengths above the model's %d positions are skipped: %s", max_length,
                    [n for n in settings.sequence_lengths if n > max_length])
    if not lengths:
        raise PofaError(f"every sequence length asked for exceeds the model's {max_length} positions")
    settings = replace(settings, sequence_lengths=lengths)
    rows, pad_id = _real_text_rows(variants[0].path, texts, max_length) if texts else ([], 0)
    results: dict[str, Any] = {}
    engines: dict[str, Any] = {}
    runners: dict[str, dict[int, Callable[[], Any]]] = {}
    steps = len(variants) * (1 + settings.rounds + 1)
    with progress("benchmark", steps, every=len(variants)) as bar, OtherLoad() as other:
        for variant in variants:
            engines[variant.name], runners[variant.name], results[variant.name] = _load(variant, settings, vocab)
            bar.advance()
        checks = verify(engines) if verify else None
        times: dict[str, dict[int, list[float]]] = {name: {n: [] for n in lengths} for name in engines}
        for round_ in range(settings.rounds):
            order = list(engines) if round_ % 2 == 0 else list(engines)[::-1]
            for length in lengths:
                for name in order:
                    times[name][length] += timed_runs(runners[name][length], settings.duration_s / settings.rounds,
                                                      max(1, settings.min_runs // settings.rounds))
            bar.advance(len(engines))
        for name, engine in engines.items():
            figures = results[name]
            figures["latency_ms"] = {str(n): latency_summary(times[name][n]) for n in lengths}
            inputs = dummy_inputs(engine.input_names, settings.batch_size, settings.throughput_length, vocab)
            figures["throughput"] = {**engine.throughput(inputs, settings.duration_s, settings.batch_size),
                                     "sequence_length": settings.throughput_length}
            runtime = engine.describe()
            if runtime is not None:
                figures["runtime"] = runtime
            if rows:
                from .real_text import measure

                # The same statistic as the real-length figure (runs / total time, i.e. 1 / mean).
                padded = figures["latency_ms"][str(settings.throughput_length)]["mean_ms"]
                figures["real_text"] = {**measure(engine, rows, settings.duration_s, pad_id),
                                        "padded": {"sequence_length": settings.throughput_length,
                                                   "batch_size": settings.batch_size,
                                                   "sentences_per_s": settings.batch_size * 1e3 / padded}}
            bar.advance()
            log.info("%s: %s", figures["label"], _headline(figures))
    del engines, runners
    gc.collect()
    if other.share is not None and other.share > BUSY:
        log.warning("other processes used %.0f%% of the CPU while the benchmark ran: its figures and ratios are "
                    "not reliable; rerun on an otherwise idle machine", 100 * other.share)
    found = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "machine": {**machine(settings.cores), "other_processes_cpu_share": other.share},
             "versions": versions(VERSIONS), "settings": {**asdict(settings), "sequence_lengths": list(lengths),
                                                  "throughput_sequence_length": settings.throughput_length,
                                                  "threads": settings.cores},
             "variants": results, "ratios": {f"vs_{base}": ratios(results, base) for base in BASELINES
                                             if base in results}}
    if rows:
        from .real_text import token_lengths

        found["real_text"] = {"texts": len(rows), "tokens": token_lengths(rows)}
    return found if checks is None else {**found, "checks": checks}


def _real_text_rows(tokenizer_dir: Path, texts: list[str], max_length: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """The texts tokenized one by one (at most :data:`MAX_TEXTS`, spread over the list), and the pad id."""
    from .real_text import tokenize

    chosen = texts[::max(1, -(-len(texts) // MAX_TEXTS))]
    log.info("real text: %d texts (of %d) tokenized one by one, up to %d tokens", len(chosen), len(texts), max_length)
    return tokenize(tokenizer_dir, chosen, max_length)


def _load(variant: Variant, settings: Settings, vocab: int) -> tuple[Any, dict[int, Callable[[], Any]], dict[str, Any]]:
    """Load and compile, then the warm-up runs at every length, inside one memory window: the variant's
    peak memory is what the process holds above what it held before the variant loaded."""
    with PeakMemory() as memory:
        began = time.perf_counter()
        engine = ENGINES[variant.engine](variant, settings)
        compile_s = time.perf_counter() - began
        runners = {n: engine.runner(dummy_inputs(engine.input_names, settings.batch_size, n, vocab))
                   for n in settings.sequence_lengths}
        for runner in runners.values():
            for _ in range(settings.warmup):
                runner()
    figures = {"label": variant.label, "engine": variant.engine, "path": str(variant.path),
               "precision": engine.precision, "size_bytes": model_bytes(variant), "compile_s": compile_s,
               "peak_rss_mb": memory.added_mb, "process_peak_rss_mb": memory.peak_mb}
    return engine, runners, figures


def ratios(results: dict[str, Any], baseline: str) -> dict[str, Any]:
    """Per variant: latency speedup (baseline median / variant median, per length), throughput
    (variant / baseline), size and peak memory (variant / baseline)."""
    base = results[baseline]
    out: dict[str, Any] = {}
    for name, figures in results.items():
        if name == baseline:
            continue
        out[name] = {"latency_speedup": {n: base["latency_ms"][n]["median_ms"] / lat["median_ms"]
                                         for n, lat in figures["latency_ms"].items() if n in base["latency_ms"]},
                     "throughput": figures["throughput"]["items_per_s"] / base["throughput"]["items_per_s"],
                     "size": figures["size_bytes"] / base["size_bytes"]}
        if figures["peak_rss_mb"] and base["peak_rss_mb"]:
            out[name]["peak_rss"] = figures["peak_rss_mb"] / base["peak_rss_mb"]
    return out


def _headline(figures: dict[str, Any]) -> str:
    shown = ", ".join(f"{n} tokens {lat['median_ms']:.2f} ms" for n, lat in figures["latency_ms"].items())
    return f"{shown}; {figures['throughput']['items_per_s']:.1f}/s; {figures['size_bytes'] / 1e6:.1f} MB"


def _import_engines(variants: list[Variant]) -> None:
    """Load the engines' libraries before any memory window opens, so no variant is charged for them."""
    import importlib

    for engine in {v.engine for v in variants}:
        for module in getattr(ENGINES[engine], "modules", ()):
            importlib.import_module(module)


def _model_config(variants: list[Variant]) -> dict[str, Any]:
    for variant in variants:
        config = variant.path / "config.json"
        if config.is_file():
            return json.loads(config.read_text())
    return {}


def model_bytes(variant: Variant) -> int:
    """Bytes on disk of the weights and graph (not tokenizer or config files)."""
    return sum(p.stat().st_size for pattern in ENGINES[variant.engine].files for p in variant.path.glob(pattern))


# --- what a target holds ----------------------------------------------------------------------------

def ir_variants(ir_dir: Path, task: str) -> list[Variant]:
    """An FP32 IR gives OpenVINO FP32 (f32 hint) and default precision (BF16 where the CPU has it); an
    INT8 IR gives INT8 dense and, when its runtime config sets a sparse rate, INT8 with it."""
    import openvino as ov

    from .runtime.model import IR_FILE, SPARSE_RATE, int8_weights, read_runtime_config

    if not int8_weights(ov.Core().read_model(ir_dir / IR_FILE)):
        return [Variant("openvino_fp32", "openvino", ir_dir, task, {"INFERENCE_PRECISION_HINT": "f32"}),
                Variant("openvino_default", "openvino", ir_dir, task)]
    found = [Variant("openvino_int8", "openvino", ir_dir, task, {SPARSE_RATE: "1.0"})]
    if float(read_runtime_config(ir_dir).get("CPU", {}).get(SPARSE_RATE, 1.0)) < 1.0:
        found.append(Variant("openvino_int8_sparse", "openvino", ir_dir, task))
    return found


def run_variants(run_dir: Path, checkpoint: Path, task: str) -> list[Variant]:
    """A run directory: its torch checkpoint, ``openvino-fp32/`` and the INT8 ``openvino/``."""
    from .rundir import LAYOUT
    from .runtime.model import IR_FILE

    found = [Variant("torch_fp32", "torch", checkpoint, task)] if (checkpoint / "config.json").is_file() else []
    for sub in (LAYOUT.ir_fp32, LAYOUT.ir):
        if (run_dir / sub / IR_FILE).is_file():
            found += [v for v in ir_variants(run_dir / sub, task) if v.name not in {f.name for f in found}]
    return found


def benchmark_run_dir(run_dir: Path, checkpoint: Path, task: str, settings: Settings,
                      texts: list[str] | None = None) -> dict[str, Any]:
    """A run directory's variants measured (also on ``texts``), with charts under ``run_dir/benchmark/``."""
    return write_results(benchmark(run_variants(run_dir, checkpoint, task), settings, texts=texts), run_dir)


def write_results(result: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Charts into ``out_dir/benchmark/``, linked from the result by paths relative to ``out_dir``;
    variant paths inside ``out_dir`` are made relative too (reports carry no machine paths)."""
    from .charts import write_charts
    from .rundir import LAYOUT

    for figures in result["variants"].values():
        path = Path(figures["path"])
        if path.is_relative_to(out_dir):
            figures["path"] = str(path.relative_to(out_dir))
    result["charts"] = write_charts(result, out_dir, LAYOUT.benchmark)
    return result
