"""Benchmark: a bundle served by `pofa-openvino serve` (dynamic batching) under concurrent clients that send
single sentences, against batch 1 synchronous inference on the same bundle in this process, padded to 128
tokens (baseline A) and at each text's real length (baseline B); and the served labels against
`Bundle.predict`'s on the whole texts file. Issue 20's goal: with 8 clients, served >= 2.5x baseline A's
sentences/s with p99 latency under 50 ms, and the same labels as `predict`.

    .venv/bin/python benchmarks/serve_load.py [--bundle runs/quickstart/package]   # ~1 min, CPU otherwise idle

Needs the bundle (`make demo` leaves the default one), the `serve` extra, and ``../shared/data/sst2/dev.tsv``
(or ``--texts``). The server runs as a subprocess on a free loopback port and stops on SIGTERM. The clients
run in this process, each with its own keep-alive connection, and send every text once (warm-up, untimed)
then a fixed number of requests (every text twice by default), twice over: on one asyncio event loop (the
light load generator, the goal's figure) and as threads with ``http.client`` (the first one, for comparison).
Results: ``benchmarks/results/serve_load-<bundle name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_cli import show_logs

from pofa_openvino.bench import BUSY, VERSIONS, OtherLoad, Settings, latency_summary, machine, timed_runs, versions
from pofa_openvino.data.text import read_texts
from pofa_openvino.runtime.bundle import Bundle

log = logging.getLogger("serve_load")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CLI = Path(sys.executable).with_name("pofa-openvino")
PADDED_LENGTH = 128
WARMUP = 10  # untimed runs before baseline A
MIN_RUNS = 10  # timed runs per baseline, however short --duration is
GOAL_RATIO, GOAL_P99_MS = 2.5, 50.0  # issue 20
# The served phases, in order: the goal's figure with the light client, then the first load
# generator's (threads), so that the two can be compared on the same server.
SERVED = (("served", "asyncio"), ("served_threads", "threads"))
BATCH_LOG = re.compile(r"served (\d+) sequences in (\d+) batches \(mean batch ([\d.]+), (\d+)% of computed tokens "
                       r"were padding\)")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "runs" / "quickstart" / "package")
    parser.add_argument("--texts", type=Path, default=ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv")
    parser.add_argument("--column", default="text", help="the texts' column in a csv/tsv/jsonl file")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (keep-alive connections)")
    parser.add_argument("--requests", type=int, help="requests in all, one sentence each (default: every text twice)")
    parser.add_argument("--max-batch", type=int, default=32, help="passed to serve")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="passed to serve")
    parser.add_argument("--streams", type=int, help="passed to serve (default: OpenVINO's choice for the bundle)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each batch 1 baseline")
    parser.add_argument("--baseline-hint", choices=("bundle", "LATENCY"), default="bundle",
                        help="the baselines' PERFORMANCE_HINT: the bundle's runtime config as is (default), or "
                             "LATENCY (one stream with every core, the best a single synchronous request gets)")
    parser.add_argument("--name", help="results file name (default: serve_load-<the bundle's name>)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.clients < 1 or (args.requests is not None and args.requests < 1) or args.duration <= 0:
        parser.error("--clients and --requests must be at least 1, --duration above 0")
    if not (args.bundle / "manifest.json").is_file():
        parser.error(f"{args.bundle} is not a bundle; `make demo` builds the default one")
    return args


def main() -> int:
    args = arguments()
    show_logs()
    texts = read_texts(args.texts, args.column)
    properties = {} if args.baseline_hint == "bundle" else {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    bundle = Bundle(args.bundle, properties=properties)
    name = args.name or f"serve_load-{bundle.manifest['name']}"
    requests = args.requests or 2 * len(texts)
    phases: dict[str, Any] = {}
    log.info("%d texts, median %.0f tokens; baselines: %g s each", len(texts), np.median(token_lengths(bundle, texts)),
             args.duration)
    for phase, infer, warmup in (("padded", lambda text: padded_infer(bundle, text, PADDED_LENGTH), WARMUP),
                                 ("real_length", lambda text: bundle.outputs([text]), len(texts))):
        phases[phase] = baseline(infer, texts, args.duration, warmup)
        log.info("baseline %s: %s", phase, headline(phases[phase]))
    expected = [p["label"] for p in bundle.predict(texts)]
    answers: dict[int, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        server = Server(args.bundle, Path(tmp) / "server.log", args.max_batch, args.max_delay_ms, args.streams)
        try:
            for phase, kind in SERVED:
                phases[phase], labels = load_test(server, bundle.manifest["name"], texts, requests, args.clients,
                                                   kind)
                log.info("%s (%s clients): %s", phase, kind, headline(phases[phase]))
                for index, served in labels.items():
                    answers.setdefault(index, set()).update(served)
        finally:
            exit_code, server_log = server.stop()
    phases["served"]["server"] = {"exit_code": exit_code, "batching": batching_stats(server_log),
                                  "log_tail": server_log.splitlines()[-5:]}
    check = check_labels(texts, expected, answers)
    write_results(summary(args, bundle, texts, requests, phases, check), args.results_dir, name)
    errors = sum(phases[phase]["errors"] for phase, _ in SERVED)
    return 1 if errors or check["unanswered"] or exit_code != 0 else 0  # broken, not slow


# --- the baselines -----------------------------------------------------------------------------------

def token_lengths(bundle: Bundle, texts: list[str]) -> np.ndarray:
    """Each text's token count under the bundle's own tokenizer (the real lengths served)."""
    return bundle.tokens(texts)["attention_mask"].sum(axis=1)


def padded_infer(bundle: Bundle, text: str, width: int) -> dict[str, np.ndarray]:
    """Baseline A: tokenize one text, pad it on the right to ``width`` tokens (pad id, mask 0) as a
    fixed-shape deployment does, and run it: the cost of ignoring how short real text is."""
    tokens = bundle.tokens([text])
    extra = max(0, width - tokens["input_ids"].shape[1])  # a fixed width, not the batch's longest: np.pad
    padded = {name: np.pad(value, ((0, 0), (0, extra)),
                           constant_values=bundle.pad_token_id if name == "input_ids" else 0)
              for name, value in tokens.items()}
    return bundle.model.infer(padded)


def baseline(infer: Callable[[str], Any], texts: list[str], duration_s: float, warmup: int) -> dict[str, Any]:
    """Batch 1, synchronous, texts in turn for ``duration_s`` after ``warmup`` untimed runs (A: a few,
    every run has the same shape; B: every text once, each new length is a new shape, see
    :func:`load_test`): sentences/s over the wall time, and each call's latency (tokenization
    included, as the server's is)."""
    cycle = itertools.cycle(texts)
    for _ in range(warmup):
        infer(next(cycle))
    with OtherLoad() as other:
        began = time.perf_counter()
        times = timed_runs(lambda: infer(next(cycle)), duration_s, MIN_RUNS)
        wall = time.perf_counter() - began
    return {"sentences_per_s": len(times) / wall, "latency_ms": latency_summary(times), "wall_s": wall,
            "other_processes_cpu_share": other.share}


def headline(figures: dict[str, Any]) -> str:
    latency = figures["latency_ms"]
    return (f"{figures['sentences_per_s']:.1f} sentences/s, p50 {latency['median_ms']:.2f} ms, "
            f"p90 {latency['p90_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms")


# --- the served bundle -------------------------------------------------------------------------------

class Server:
    """`pofa-openvino serve` on a free loopback port, as a user starts it; its log goes to a file
    (a pipe nobody reads would stall it), read back for the batching figures after it stops."""

    def __init__(self, bundle: Path, log_file: Path, max_batch: int, max_delay_ms: float, streams: int | None,
                 timeout_s: float = 120):
        self.port, self.log_file = free_port(), log_file
        command = [str(CLI), "serve", str(bundle), "--port", str(self.port), "--max-batch", str(max_batch),
                   "--max-delay-ms", str(max_delay_ms), *(["--streams", str(streams)] if streams else [])]
        with log_file.open("w") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not become ready: {log_file.read_text()[-2000:]}")
            time.sleep(0.2)

    def ready(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/v2/health/ready")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def cpu_seconds(self) -> float | None:
        """The server process's CPU time so far (Linux), so its work is not counted as another load."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> tuple[int | None, str]:
        """SIGTERM (a graceful stop finishes what is in flight and exits 0), then its exit code and log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        return code, self.log_file.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Seen:
    """What one load's clients saw: each answer's latency, the labels served by text index, the errors."""

    times: list[float] = field(default_factory=list)
    labels: dict[int, set[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def answered(self, index: int, elapsed: float, answer: bytes) -> None:
        self.labels.setdefault(index, set()).add(
            next(o["data"][0] for o in json.loads(answer)["outputs"] if o["name"] == "label"))
        self.times.append(elapsed)


def request_body(text: str) -> bytes:
    """One sentence as an infer request, in the protocol's JSON."""
    return json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}).encode()


ANSWER_ERRORS = (OSError, http.client.HTTPException, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                 ValueError, KeyError, StopIteration)


def thread_clients(port: int, path: str, texts: list[str], numbers: Iterable[int], concurrency: int
                   ) -> tuple[float, Seen]:
    """The first load generator: ``concurrency`` threads, each with its own keep-alive
    ``http.client`` connection, over one shared list of request numbers (texts round-robin); the wall
    time from the common start to the last answer."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for number in numbers:
        work.put(number)
    seen, start = Seen(), threading.Barrier(concurrency + 1)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        while True:
            try:
                index = work.get_nowait() % len(texts)
            except queue.Empty:
                break
            began = time.perf_counter()
            try:
                connection.request("POST", path, request_body(texts[index]), {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}: {answer[:200]!r}")
                seen.answered(index, time.perf_counter() - began, answer)
            except ANSWER_ERRORS as exc:  # counted; the next request gets a fresh connection
                seen.errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, seen


def asyncio_clients(port: int, path: str, texts: list[str], numbers: Iterable[int], concurrency: int
                    ) -> tuple[float, Seen]:
    """The light load generator: ``concurrency`` keep-alive HTTP/1.1 connections on one asyncio
    event loop, each sending a request and reading its answer (status line, headers, Content-Length
    bytes) in turn. Why: clients and server share the CPU, and the threads and ``http.client``'s
    header parsing of :func:`thread_clients` cost the server about 3x this one's CPU per request."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ".encode()
    work, seen = iter(numbers), Seen()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for number in work:
            index = number % len(texts)
            body = request_body(texts[index])
            began = time.perf_counter()
            try:
                writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
                status, *headers = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                length = next(int(value) for name, _, value in (h.partition(b":") for h in headers)
                              if name.lower() == b"content-length")
                answer = await reader.readexactly(length)
                if status.split()[1] != b"200":
                    raise ValueError(f"{status.decode()}: {answer[:200]!r}")
                seen.answered(index, time.perf_counter() - began, answer)
            except ANSWER_ERRORS as exc:  # counted; the next request gets a fresh connection
                seen.errors.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    async def load() -> float:
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
        began = time.perf_counter()
        await asyncio.gather(*(client(*connection) for connection in connections))
        return time.perf_counter() - began

    return asyncio.run(load()), seen


CLIENTS = {"asyncio": asyncio_clients, "threads": thread_clients}


def load_test(server: Server, model: str, texts: list[str], requests: int, concurrency: int, kind: str
              ) -> tuple[dict[str, Any], dict[int, set[str]]]:
    """Warm up (every text once, untimed: OpenVINO compiles its kernels for each new input shape on
    first use, measured at about twice a run's time), then ``requests`` single-sentence requests from
    ``concurrency`` clients of ``kind``: sentences/s, latency percentiles and errors; and the labels
    served by text index."""
    run = partial(CLIENTS[kind], server.port, f"/v2/models/{model}/infer", texts)
    _, warm = run(range(len(texts)), concurrency)
    server_before, own_before = server.cpu_seconds(), own_cpu_seconds()
    with OtherLoad() as other:
        wall, seen = run(range(requests), concurrency)
    server_after, own_after = server.cpu_seconds(), own_cpu_seconds()
    figures = {"client": kind, "sentences_per_s": len(seen.times) / wall,
               "latency_ms": latency_summary(seen.times) if seen.times else None,
               "wall_s": wall, "requests": requests, "answered": len(seen.times), "errors": len(seen.errors),
               "error_examples": seen.errors[:5], "warmup_requests": len(texts), "warmup_errors": len(warm.errors),
               "server_cpu_s": None if server_before is None or server_after is None else server_after - server_before,
               "clients_cpu_s": own_after - own_before,
               "other_processes_cpu_share": besides_server(other.share, server_before, server_after, wall)}
    labels = warm.labels
    for index, served in seen.labels.items():
        labels.setdefault(index, set()).update(served)
    return figures, labels


def own_cpu_seconds() -> float:
    """This process's CPU time: the clients' cost, which shares the machine with the server."""
    times = os.times()
    return times.user + times.system


def besides_server(share: float | None, before: float | None, after: float | None, wall_s: float) -> float | None:
    """OtherLoad counts every process but this one; the server's CPU time is part of what is measured,
    so its share of the machine (CPU seconds over wall time times CPUs) is taken off."""
    if share is None or before is None or after is None:
        return share
    return max(0.0, share - (after - before) / (wall_s * (os.cpu_count() or 1)))


def batching_stats(server_log: str) -> dict[str, Any] | None:
    """The server's own account at shutdown (every phase's requests, warm-up included)."""
    found = BATCH_LOG.search(server_log)
    if found is None:
        return None
    sequences, batches, mean, padding = found.groups()
    return {"sequences": int(sequences), "batches": int(batches), "mean_batch": float(mean),
            "padding_share": int(padding) / 100}


def check_labels(texts: list[str], expected: list[str], answers: dict[int, set[str]]) -> dict[str, Any]:
    """Texts whose served label (any of them, where one was sent more than once) is not `predict`'s."""
    unanswered = [i for i in range(len(texts)) if i not in answers]
    mismatched = [i for i, served in answers.items() if served != {expected[i]}]
    return {"texts": len(texts), "unanswered": len(unanswered), "mismatches": len(mismatched),
            "mismatch_examples": [{"text": texts[i], "predict": expected[i], "served": sorted(answers[i])}
                                  for i in mismatched[:5]]}


# --- the record ---------------------------------------------------------------------------------------

def summary(args: argparse.Namespace, bundle: Bundle, texts: list[str], requests: int, phases: dict[str, Any],
            check: dict[str, Any]) -> dict[str, Any]:
    """Everything measured, the ratios computed from it, and the goal's verdict."""
    served, padded, real = phases["served"], phases["padded"], phases["real_length"]
    ratios = {"served_vs_padded": served["sentences_per_s"] / padded["sentences_per_s"],
              "served_vs_real_length": served["sentences_per_s"] / real["sentences_per_s"],
              "served_threads_vs_padded": phases["served_threads"]["sentences_per_s"] / padded["sentences_per_s"]}
    p99 = served["latency_ms"]["p99_ms"] if served["latency_ms"] else float("inf")
    goal = {"clients": args.clients, "ratio_needed": GOAL_RATIO, "p99_ms_needed": GOAL_P99_MS,
            "ratio_met": ratios["served_vs_padded"] >= GOAL_RATIO, "p99_met": p99 < GOAL_P99_MS,
            "labels_met": check["mismatches"] == 0 and check["unanswered"] == 0,
            "errors_met": served["errors"] == 0 and served["server"]["exit_code"] == 0}
    goal["met"] = all(goal[k] for k in ("ratio_met", "p99_met", "labels_met", "errors_met")) and args.clients == 8
    shares = {phase: figures["other_processes_cpu_share"] for phase, figures in phases.items()}
    compiled = bundle.model.compiled
    lengths = token_lengths(bundle, texts)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(Settings().cores), "other_processes_cpu_share": shares},
        "unreliable_phases": [phase for phase, share in shares.items() if share is not None and share > BUSY],
        "versions": versions((*VERSIONS, "openvino-tokenizers", "starlette", "uvicorn", "uvloop", "httptools")),
        "settings": {"clients": args.clients, "requests": requests, "max_batch": args.max_batch,
                     "max_delay_ms": args.max_delay_ms, "streams": args.streams, "baseline_duration_s": args.duration,
                     "padded_length": PADDED_LENGTH, "baseline_hint": args.baseline_hint,
                     "baseline_compiled": {k: str(compiled.get_property(k)) for k in
                                           ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")}},
        "bundle": {"path": shown(args.bundle), "name": bundle.manifest["name"], "target": bundle.manifest["target"]},
        "texts": {"file": shown(args.texts), "count": len(texts), "median_tokens": float(np.median(lengths)),
                  "p90_tokens": float(np.percentile(lengths, 90)), "max_tokens": int(lengths.max())},
        "baseline_padded": padded, "baseline_real_length": real, "served": served,
        "served_threads": phases["served_threads"], "labels": check,
        "ratios": ratios, "goal": goal,
    }


def shown(path: Path) -> str:
    """A path relative to the repository when it is in it or beside it, like ``../shared/data`` (results
    carry no machine paths)."""
    resolved = path.resolve()
    return os.path.relpath(resolved, ROOT) if resolved.is_relative_to(ROOT.parent) else str(path)


def markdown(result: dict[str, Any]) -> list[str]:
    """The headline table, the ratios, the checks and the goal's verdict, for a reader."""
    settings, served, texts = result["settings"], result["served"], result["texts"]
    compiled, check = settings["baseline_compiled"], result["labels"]
    streams = settings.get("streams")
    batching = (f"{settings['clients']} clients, batches <= {settings['max_batch']} within "
                f"{settings['max_delay_ms']:g} ms" + (f", {streams} stream(s)" if streams else ""))
    rows = [("baseline_padded", "padded", f"A: batch 1, padded to {settings['padded_length']} tokens"),
            ("baseline_real_length", "real_length", "B: batch 1, real length"),
            ("served", "served", f"**served, {batching}, asyncio clients**"),
            ("served_threads", "served_threads", f"served, {batching}, thread clients (the first load generator)")]
    shares = result["machine"]["other_processes_cpu_share"]
    return [f"# Serving {result['bundle']['name']}: load test ({result['date'][:10]})", "",
            f"Bundle {result['bundle']['path']} on {result['machine']['cpu']}, {result['machine']['cores_used']} "
            f"cores; openvino {result['versions']['openvino']}. Texts: {texts['file']} ({texts['count']}, median "
            f"{texts['median_tokens']:.0f} tokens, p90 {texts['p90_tokens']:.0f}, max {texts['max_tokens']}). "
            f"Baselines ({settings['baseline_duration_s']:g} s each): {baseline_threads(compiled)}. Served: "
            f"{served['requests']} requests after {served['warmup_requests']} warm-up (every text once) per client "
            f"kind; CPU time meanwhile, asyncio clients: {cpu_line(served)}; thread clients: "
            f"{cpu_line(result['served_threads'])}.", "",
            "| | sentences/s | p50 ms | p90 ms | p99 ms | other processes' CPU |", "|---|---:|---:|---:|---:|---:|",
            *(table_row(label, result[key], shares[phase]) for key, phase, label in rows), "",
            f"Served / A: **{result['ratios']['served_vs_padded']:.2f}x** (thread clients: "
            f"{result['ratios']['served_threads_vs_padded']:.2f}x); served / B: "
            f"{result['ratios']['served_vs_real_length']:.2f}x. Errors: {served['errors']} (thread clients: "
            f"{result['served_threads']['errors']}); server exit code "
            f"{served['server']['exit_code']}. {batching_line(served['server']['batching'])}",
            f"Labels against `predict` on all {check['texts']} texts: {check['mismatches']} mismatches, "
            f"{check['unanswered']} unanswered.", "", verdict(result["goal"]),
            *(["", f"**Not reliable**: other processes used over {BUSY:.0%} of the CPU during "
                   f"{', '.join(result['unreliable_phases'])}; rerun on an otherwise idle machine."]
              if result["unreliable_phases"] else [])]


def table_row(label: str, figures: dict[str, Any], share: float | None) -> str:
    latency = figures["latency_ms"] or {key: float("nan") for key in ("median_ms", "p90_ms", "p99_ms")}
    load = "n/a" if share is None else f"{share:.0%}" + (" (unreliable)" if share > BUSY else "")
    return (f"| {label} | {figures['sentences_per_s']:.1f} | {latency['median_ms']:.2f} | {latency['p90_ms']:.2f} | "
            f"{latency['p99_ms']:.2f} | {load} |")


def baseline_threads(compiled: dict[str, str]) -> str:
    """How many threads one synchronous request had: under THROUGHPUT the cores are split into streams."""
    streams, threads = int(compiled["NUM_STREAMS"]), int(compiled["INFERENCE_NUM_THREADS"])
    return (f"{compiled['PERFORMANCE_HINT']} hint, {streams} stream(s) over {threads} threads: one synchronous "
            f"request runs on {max(1, threads // max(1, streams))} of them")


def cpu_line(served: dict[str, Any]) -> str:
    server = "n/a" if served["server_cpu_s"] is None else f"{served['server_cpu_s']:.2f} s"
    return f"server {server}, clients {served['clients_cpu_s']:.2f} s, over {served['wall_s']:.1f} s of wall time"


def batching_line(batching: dict[str, Any] | None) -> str:
    if batching is None:
        return "The server logged no batching figures."
    return (f"Server batching (both client kinds' warm-up included): {batching['sequences']} sequences in "
            f"{batching['batches']} batches, mean batch {batching['mean_batch']:.1f}, "
            f"{batching['padding_share']:.0%} of computed tokens were padding.")


def verdict(goal: dict[str, Any]) -> str:
    """Issue 20's goal, met or not, and which part fell short."""
    parts = {"ratio_met": f">= {goal['ratio_needed']}x A", "p99_met": f"p99 < {goal['p99_ms_needed']:g} ms",
             "labels_met": "same labels as predict", "errors_met": "no errors, server exit 0"}
    short = [text for key, text in parts.items() if not goal[key]]
    if goal["clients"] != 8:
        short.append(f"8 clients (measured with {goal['clients']})")
    head = f"Issue 20's goal ({', '.join(parts.values())}, 8 clients): "
    return head + ("**met**." if goal["met"] else f"**NOT met**: short of {'; '.join(short)}.")


def write_results(result: dict[str, Any], out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = markdown(result)
    (out_dir / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    log.info("results: %s.{json,md}", out_dir / name)


if __name__ == "__main__":
    sys.exit(main())
