"""Benchmark: a bundle served by `pofa-openvino serve` (dynamic batching) under concurrent clients that send
single sentences, against batch 1 synchronous inference on the same bundle in this process, padded to 128
tokens (baseline A) and at each text's real length (baseline B); and the served labels against
`Bundle.predict`'s on the whole texts file. Issue 20's goal: with 8 clients, served >= 2.5x baseline A's
sentences/s with p99 latency under 50 ms, and the same labels as `predict`.

    .venv/bin/python benchmarks/serve_load.py [--bundle runs/quickstart/package]   # ~1 min, CPU otherwise idle

Needs the bundle (`make demo` leaves the default one), the `serve` extra, and ``../shared/data/sst2/dev.tsv``
(or ``--texts``). The server runs as a subprocess on a free loopback port and stops on SIGTERM; the
clients are threads of this process, each with its own keep-alive connection, sending a fixed number
of requests (every text twice by default). Results: ``benchmarks/results/serve_load-<bundle name>.{json,md}``.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

import numpy as np
from bench_cli import show_logs

from pofa_openvino.bench import BUSY, VERSIONS, OtherLoad, Settings, latency_summary, machine, timed_runs, versions
from pofa_openvino.bundle import Bundle
from pofa_openvino.data.text import read_texts

log = logging.getLogger("serve_load")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CLI = Path(sys.executable).with_name("pofa-openvino")
PADDED_LENGTH = 128
WARMUP = 10  # untimed runs per baseline, and untimed requests per client before the load test
MIN_RUNS = 10  # timed runs per baseline, however short --duration is
GOAL_RATIO, GOAL_P99_MS = 2.5, 50.0  # issue 20
BATCH_LOG = re.compile(r"served (\d+) sequences in (\d+) batches \(mean batch ([\d.]+), (\d+)% of computed tokens "
                       r"were padding\)")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "runs" / "quickstart" / "package")
    parser.add_argument("--texts", type=Path, default=ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv")
    parser.add_argument("--column", default="text", help="the texts' column in a csv/tsv/jsonl file")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
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
    for phase, infer in (("padded", lambda text: padded_infer(bundle, text, PADDED_LENGTH)),
                         ("real_length", lambda text: bundle.outputs([text]))):
        phases[phase] = baseline(infer, texts, args.duration)
        log.info("baseline %s: %s", phase, headline(phases[phase]))
    expected = [p["label"] for p in bundle.predict(texts)]
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        server = Server(args.bundle, Path(tmp) / "server.log", args.max_batch, args.max_delay_ms, args.streams)
        try:
            phases["served"], answers = load_test(server, bundle.manifest["name"], texts, requests, args.clients)
            log.info("served: %s", headline(phases["served"]))
            answers = complete_answers(server, bundle.manifest["name"], texts, answers, args.clients)
        finally:
            exit_code, server_log = server.stop()
    phases["served"]["server"] = {"exit_code": exit_code, "batching": batching_stats(server_log),
                                  "log_tail": server_log.splitlines()[-5:]}
    check = check_labels(texts, expected, answers)
    write_results(summary(args, bundle, texts, requests, phases, check), args.results_dir, name)
    return 1 if phases["served"]["errors"] or check["unanswered"] or exit_code != 0 else 0  # broken, not slow


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


def baseline(infer: Callable[[str], Any], texts: list[str], duration_s: float) -> dict[str, Any]:
    """Batch 1, synchronous, texts in turn for ``duration_s`` after a few untimed runs:
    sentences/s over the wall time, and each call's latency (tokenization included, as the server's is)."""
    cycle = itertools.cycle(texts)
    for _ in range(WARMUP):
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
class Client:
    """One keep-alive connection sending single-sentence infer requests; what it saw is kept."""

    port: int
    path: str
    times: list[float] = field(default_factory=list)
    labels: dict[int, set[str]] = field(default_factory=dict)  # text index -> labels served for it
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def send(self, index: int, text: str) -> None:
        """One request, timed from sending to the whole answer read; any failure counts as an error
        (and a fresh connection is opened for the next one)."""
        body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]})
        began = time.perf_counter()
        try:
            self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - began
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}: {answer[:200]!r}")
            label = next(o["data"][0] for o in json.loads(answer)["outputs"] if o["name"] == "label")
        except (OSError, http.client.HTTPException, ValueError, KeyError, StopIteration) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return
        self.times.append(elapsed)
        self.labels.setdefault(index, set()).add(label)

    def drain(self, work: queue.SimpleQueue, texts: list[str], start: threading.Barrier | None = None) -> None:
        """Take request numbers until none are left (a closed loop: each client waits for its answer)."""
        if start is not None:
            start.wait()
        while True:
            try:
                number = work.get_nowait()
            except queue.Empty:
                return
            self.send(number % len(texts), texts[number % len(texts)])


def run_clients(clients: list[Client], texts: list[str], numbers: Iterable[int]) -> float:
    """Every client in its own thread over one shared list of request numbers (texts round-robin);
    the wall time from the common start to the last answer."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for number in numbers:
        work.put(number)
    start = threading.Barrier(len(clients) + 1)
    threads = [threading.Thread(target=c.drain, args=(work, texts, start)) for c in clients]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def load_test(server: Server, model: str, texts: list[str], requests: int, concurrency: int
              ) -> tuple[dict[str, Any], dict[int, set[str]]]:
    """Warm up (untimed, every client), then ``requests`` single-sentence requests from ``concurrency``
    clients: sentences/s, latency percentiles and errors; and the labels served by text index."""
    path = f"/v2/models/{model}/infer"
    warm = [Client(server.port, path) for _ in range(concurrency)]
    run_clients(warm, texts, range(WARMUP * concurrency))
    clients = [Client(server.port, path) for _ in range(concurrency)]
    server_before, own_before = server.cpu_seconds(), own_cpu_seconds()
    with OtherLoad() as other:
        wall = run_clients(clients, texts, range(requests))
    server_after, own_after = server.cpu_seconds(), own_cpu_seconds()
    times = [t for c in clients for t in c.times]
    errors = [e for c in clients for e in c.errors]
    labels: dict[int, set[str]] = {}
    for client in clients:
        for index, served in client.labels.items():
            labels.setdefault(index, set()).update(served)
    for connection in (c.connection for c in clients + warm):
        connection.close()
    figures = {"sentences_per_s": len(times) / wall, "latency_ms": latency_summary(times) if times else None,
               "wall_s": wall, "requests": requests, "answered": len(times), "errors": len(errors),
               "error_examples": errors[:5], "warmup_requests": WARMUP * concurrency,
               "warmup_errors": sum(len(c.errors) for c in warm),
               "server_cpu_s": None if server_before is None or server_after is None else server_after - server_before,
               "clients_cpu_s": own_after - own_before,
               "other_processes_cpu_share": besides_server(other.share, server_before, server_after, wall)}
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


def complete_answers(server: Server, model: str, texts: list[str], answers: dict[int, set[str]],
                     concurrency: int) -> dict[int, set[str]]:
    """Texts the load test did not send (fewer requests than texts) are sent now, untimed and as
    concurrently, so that the label check covers the whole file."""
    missing = [i for i in range(len(texts)) if i not in answers]
    if missing:
        clients = [Client(server.port, f"/v2/models/{model}/infer") for _ in range(concurrency)]
        run_clients(clients, texts, missing)
        for client in clients:
            client.connection.close()
            for index, served in client.labels.items():
                answers.setdefault(index, set()).update(served)
        errors = [e for c in clients for e in c.errors]
        if errors:
            log.error("%d of the check's %d requests failed: %s", len(errors), len(missing), errors[0])
    return answers


def batching_stats(server_log: str) -> dict[str, Any] | None:
    """The server's own account at shutdown (warm-up and check requests included)."""
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
              "served_vs_real_length": served["sentences_per_s"] / real["sentences_per_s"]}
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
        "baseline_padded": padded, "baseline_real_length": real, "served": served, "labels": check,
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
    rows = [("baseline_padded", "padded", f"A: batch 1, padded to {settings['padded_length']} tokens"),
            ("baseline_real_length", "real_length", "B: batch 1, real length"),
            ("served", "served", f"served, {settings['clients']} clients, batches <= {settings['max_batch']} "
                                 f"within {settings['max_delay_ms']:g} ms"
                                 + (f", {settings['streams']} stream(s)" if settings.get("streams") else ""))]
    shares = result["machine"]["other_processes_cpu_share"]
    return [f"# Serving {result['bundle']['name']}: load test ({result['date'][:10]})", "",
            f"Bundle {result['bundle']['path']} on {result['machine']['cpu']}, {result['machine']['cores_used']} "
            f"cores; openvino {result['versions']['openvino']}. Texts: {texts['file']} ({texts['count']}, median "
            f"{texts['median_tokens']:.0f} tokens, p90 {texts['p90_tokens']:.0f}, max {texts['max_tokens']}). "
            f"Baselines ({settings['baseline_duration_s']:g} s each): {baseline_threads(compiled)}. Served: "
            f"{served['requests']} requests after {served['warmup_requests']} warm-up; CPU time meanwhile "
            f"{cpu_line(served)}.", "",
            "| | sentences/s | p50 ms | p90 ms | p99 ms | other processes' CPU |", "|---|---:|---:|---:|---:|---:|",
            *(table_row(label, result[key], shares[phase]) for key, phase, label in rows), "",
            f"Served / A: **{result['ratios']['served_vs_padded']:.2f}x**; served / B: "
            f"{result['ratios']['served_vs_real_length']:.2f}x. Errors: {served['errors']}; server exit code "
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
    return (f"Server batching (warm-up and check included): {batching['sequences']} sequences in "
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
