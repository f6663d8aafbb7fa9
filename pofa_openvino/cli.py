"""The command line, thin over the Python API. Errors are one line; ``--debug`` shows tracebacks."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import interrupts
from .errors import PofaError, UsageError
from .rundir import LAYOUT

TARGETS = ("xeon-amx", "xeon", "edge")  # package.target's choices (kept equal by a test)
# What the base install runs (`serve` with its extra); every other verb needs the `compress` extra.
RUNTIME_VERBS = frozenset({"predict", "verify", "serve"})
EXIT_CODES = """exit codes:
  0    done
  1    a stage failed, or a bundle did not verify (one line on stderr)
  2    bad input: a recipe, a data file or the command line, or a toolkit verb without the toolkit (one line)
  130  interrupted: finished stages are kept; --resume continues
  141  the output pipe was closed (... | head)"""


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(
        prog="pofa-openvino", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prune Once for All sparse transformers on OpenVINO: fine-tune with INC pruning,\n"
                    "quantize to INT8, export, evaluate, benchmark and package, from one YAML recipe.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('pofa-openvino')}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run a recipe's stages into a run directory")
    run.add_argument("recipe", help="recipe YAML file")
    run.add_argument("-o", "--output", help="run directory (default: runs/<recipe name>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a recipe value, type-checked (repeatable)")
    run.add_argument("--resume", action="store_true", help="continue a run; unchanged finished stages are reused")
    run.add_argument("--force", action="store_true", help="replace the run's files in a non-empty directory")
    run.add_argument("--smoke", action="store_true",
                     help="check the recipe end to end in a minute: a tiny model of the same architecture, a few "
                          "generated rows of the task's format, a handful of steps (no hub needed)")

    bench = verbs.add_parser("bench", help="measure latency, throughput, memory and size of every variant")
    bench.add_argument("target", help="a run directory, an OpenVINO IR directory or a Hugging Face checkpoint")
    bench.add_argument("-o", "--output", help="where results go for an IR or checkpoint target "
                                              "(default: runs/bench-<name>; a run keeps them in its report)")
    bench.add_argument("--force", action="store_true", help="replace earlier benchmark files in --output")
    bench.add_argument("--seq-len", dest="sequence_lengths", type=int, nargs="+", metavar="N",
                       help="sequence lengths for latency (default: 32 128 384)")
    bench.add_argument("--batch-size", type=int, help="batch size (default: 1)")
    bench.add_argument("--duration", dest="duration_s", type=float, help="seconds per measurement (default: 10)")
    bench.add_argument("--threads", type=int, help="CPU threads for every engine (default: all available cores)")
    bench.add_argument("--texts", metavar="FILE",
                       help="also measure real text: a .txt (a text per line), or .csv/.tsv/.jsonl with a `text` "
                            "column (default for a run: its recipe's benchmark.texts, the evaluation split)")

    package = verbs.add_parser("package", help="build a verified edge bundle from a finished run")
    package.add_argument("run_dir", help="a run directory whose quantize stage finished (with --format ovms, "
                                         "also a bundle)")
    package.add_argument("-o", "--output", help="bundle directory (default: RUN_DIR/package; with --format ovms: "
                                                "RUN_DIR/ovms, or BUNDLE-ovms beside a bundle)")
    package.add_argument("--format", choices=("bundle", "ovms"), default="bundle",
                         help="bundle: the edge bundle; ovms: an OpenVINO Model Server repository of one "
                              "strings-in model, from the run's bundle (default: bundle)")
    package.add_argument("--target", choices=TARGETS, default="xeon-amx",
                         help="xeon-amx keeps the sparse rate; xeon and edge run dense (default: xeon-amx)")
    package.add_argument("--archive", action="store_true", help="also write BUNDLE.tar.gz beside it")
    package.add_argument("--no-compress-embeddings", dest="compress_embeddings", action="store_false",
                         help="keep float embedding tables as they are")
    package.add_argument("--force", action="store_true", help="replace a non-empty --output directory")

    predict = verbs.add_parser("predict", help="run a bundle on texts (needs only the base install)")
    predict.add_argument("bundle", help="a bundle directory")
    predict.add_argument("texts", nargs="+", help="texts to classify, or questions for a QA bundle")
    predict.add_argument("--pair", dest="pairs", action="append", metavar="TEXT",
                         help="the second text of each pair, or the context of each question (repeat per text)")

    serve = verbs.add_parser("serve", help="serve a bundle over HTTP: the Open Inference Protocol (KServe v2) that "
                                           "OVMS, Triton and KServe clients speak (needs the `serve` extra)")
    serve.add_argument("bundle", help="a bundle directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--name", help="model name in the URLs (default: the bundle's name)")
    serve.add_argument("--max-batch", type=int, default=32, help="most sequences in one batch (default: 32)")
    serve.add_argument("--max-delay-ms", type=float, default=2.0,
                       help="how long the oldest waiting text may wait for others to batch with (default: 2)")
    serve.add_argument("--max-queue", type=int, default=256,
                       help="texts waiting or running at once; beyond it requests get 503 (default: 256)")
    serve.add_argument("--streams", type=int, help="CPU inference streams (default: OpenVINO's choice)")
    serve.add_argument("--max-request-bytes", type=int, default=1 << 20, help="largest request body (default: 1 MiB)")
    serve.add_argument("--max-texts", type=int, default=64, help="most texts in one request (default: 64)")
    serve.add_argument("--max-text-chars", type=int, default=10_000, help="longest text (default: 10000 characters)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="seconds to finish requests in flight after SIGTERM (default: 30)")
    serve.add_argument("--access-log", action="store_true", help="log every request")

    verify = verbs.add_parser("verify", help="check a bundle or its archive: files, manifest, self-test, runtime")
    verify.add_argument("bundle", help="a bundle directory or .tar.gz")

    models = verbs.add_parser("models", help="the PruneOFA checkpoints and the results their model cards publish")

    recipes = verbs.add_parser("recipes", help="list recipes: model, task, the result they should reproduce")
    recipes.add_argument("directory", nargs="?", default="recipes", help="a folder of recipes (default: recipes)")

    init = verbs.add_parser("init", help="write a commented recipe: for a model and a GLUE/SQuAD task, or for your "
                                         "own classification files (--train, --validation)")
    init.add_argument("--model", help="a hub id or local HF directory (BERT or DistilBERT style); with --train "
                                      "the default is offline:all-MiniLM-L6-v2")
    init.add_argument("--task", help="squad, mnli, qqp, qnli or sst2")
    init.add_argument("--train", help="your training file (.csv, .tsv or .jsonl, one row per example)")
    init.add_argument("--validation", help="your validation file, same columns")
    init.add_argument("--text-columns", nargs="+", metavar="COLUMN",
                      help="the text column, or two for pairs (default: the columns that hold text)")
    init.add_argument("--label-column", default="label", help="the label column (default: label)")
    init.add_argument("--target", default="xeon-amx", choices=TARGETS,
                      help="where it will run: xeon-amx prunes 90%% unstructured (AMX sparse kernels); xeon and "
                           "edge remove heads and FFN neurons (faster without AMX)")
    init.add_argument("-o", "--output", help="recipe file to write (default: <name>.yaml here)")
    init.add_argument("--force", action="store_true", help="replace an existing file")

    validate = verbs.add_parser("validate", help="check recipes without running them")
    validate.add_argument("recipes", nargs="+", help="recipe YAML files")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    for verb in (run, bench, verify, models, recipes, validate):
        verb.add_argument("--json", action="store_true",
                          help="print the result as one JSON document on stdout (logs stay on stderr)")
    for verb in verbs.choices.values():
        verb.epilog, verb.formatter_class = EXIT_CODES, argparse.RawDescriptionHelpFormatter
    return parser


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = _terminal_handler() if sys.stderr.isatty() else None
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun / accelerate launch rank 0 tells the story
        level = max(level, logging.WARNING)
        handler.setFormatter(logging.Formatter(f"[rank {os.environ['RANK']}] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pofa_openvino").setLevel(level)


def _terminal_handler() -> logging.Handler | None:
    """Rich's log lines on a terminal; None in the base install, which has no rich (plain lines then)."""
    try:
        from rich.console import Console
        from rich.logging import RichHandler
    except ImportError:
        return None
    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


Result = int | dict[str, Any]  # an exit code, or (with --json) the document to print; "ok" says which code


def _cmd_run(args: argparse.Namespace) -> Result:
    from rich.table import Table

    from .pipeline import run
    from .report import summary_rows

    result = run(args.recipe, output_dir=args.output, resume=args.resume, force=args.force,
                 overrides=args.overrides, smoke=args.smoke)
    if result.rank != 0:
        return 0
    bundle = result.report.get("package")
    if args.json:
        return {"ok": True, "recipe": result.report["recipe"]["name"], "run_dir": str(result.run_dir),
                "ran": result.ran, "reused": result.reused, "summary": dict(summary_rows(result.report)),
                "bundle": str(result.run_dir / bundle["dir"]) if bundle else None, "report": result.report}
    table = Table(title=f"{result.report['recipe']['name']}: results", show_header=False)
    for name, value in summary_rows(result.report):
        table.add_row(name, value)
    console = _console()
    console.print(table)
    if result.reused:
        console.print(f"reused unchanged stages: {', '.join(result.reused)}")
    console.print(f"run directory: {result.run_dir}  (report.md, report.json, manifest.json)")
    if bundle:
        where = result.run_dir / bundle["dir"]
        console.print(f"edge bundle (verified): {where}\n  run it anywhere with only `pip install pofa-openvino`: "
                      f"pofa-openvino predict {where} \"some text\"   (check it: pofa-openvino verify {where})")
    return 0


# The recipe's benchmark section, as options (checked by the same schema).
BENCH_OPTIONS = {"sequence_lengths": "--seq-len", "batch_size": "--batch-size", "duration_s": "--duration",
                 "threads": "--threads"}


def _cmd_bench(args: argparse.Namespace) -> Result:
    from pydantic import ValidationError
    from rich.table import Table

    from .bench import settings_from
    from .bench_target import bench_target
    from .data.text import read_texts
    from .recipe import BenchmarkSection

    options = {key: getattr(args, key) for key in BENCH_OPTIONS}
    try:
        section = BenchmarkSection(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise UsageError(f"{BENCH_OPTIONS[problem['loc'][0]]}: {problem['msg']}") from None
    texts = read_texts(Path(args.texts).expanduser(), "text") if args.texts else None
    report, out = bench_target(args.target, settings_from(section), output=args.output, force=args.force,
                               texts=texts)
    bench = report["benchmark"]
    if args.json:
        return {"ok": True, "target": str(Path(args.target).resolve()), "report": str(out / LAYOUT.report_json),
                "benchmark": bench}
    lengths = [str(n) for n in bench["settings"]["sequence_lengths"]]
    table = Table(title=f"{bench['machine']['cpu']}, {bench['machine']['cores_used']} threads, "
                        f"batch {bench['settings']['batch_size']}")
    for column in ("variant", "precision", "MB", *(f"{n} tok ms" for n in lengths), "items/s", "vs torch",
                   "vs INT8"):
        table.add_column(column, justify="left" if column in ("variant", "precision") else "right")
    at = bench["settings"]["throughput_sequence_length"]
    for name, figures in bench["variants"].items():
        speedups = [bench["ratios"].get(f"vs_{base}", {}).get(name, {}).get("latency_speedup", {}).get(str(at))
                    for base in ("torch_fp32", "openvino_int8")]
        table.add_row(figures["label"], figures["precision"], f"{figures['size_bytes'] / 1e6:.1f}",
                      *(f"{figures['latency_ms'][n]['median_ms']:.2f}" if n in figures["latency_ms"] else "-"
                        for n in lengths),
                      f"{figures['throughput']['items_per_s']:.1f}",
                      *(f"{s:.2f}x" if s is not None else "-" for s in speedups))
    console = _console()
    console.print(table)
    if "real_text" in bench:
        console.print(_real_text_table(bench))
    console.print(f"speedups: median latency at {at} tokens. Full figures, ratios and charts: {out / LAYOUT.report_md}")
    return 0


def _real_text_table(bench: dict) -> Any:
    """Sentences/s on real text beside batch 1 padded to the throughput length."""
    from rich.table import Table

    tokens = bench["real_text"]["tokens"]
    table = Table(title=f"real text: {bench['real_text']['texts']} texts, median {tokens['median']:.0f} tokens, "
                        f"p99 {tokens['p99']:.0f}")
    padded, batch = bench["settings"]["throughput_sequence_length"], bench["settings"]["batch_size"]
    for column in ("variant", f"padded to {padded}, batch {batch}", "real length, batch 1", "p50 / p99 ms",
                   "sorted batches of 32", "async batches"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for figures in bench["variants"].values():
        real = figures["real_text"]
        table.add_row(figures["label"], f"{real['padded']['sentences_per_s']:.0f}/s",
                      f"{real['batch1']['sentences_per_s']:.0f}/s",
                      f"{real['batch1']['median_ms']:.2f} / {real['batch1']['p99_ms']:.2f}",
                      f"{real['sorted_batches']['sentences_per_s']:.0f}/s",
                      f"{real['async']['sentences_per_s']:.0f}/s" if "async" in real else "-")
    return table


def _cmd_package(args: argparse.Namespace) -> int:
    source = Path(args.run_dir)
    if args.format == "ovms":  # from a bundle: the base install is enough
        return _package_ovms(source, args.output, args.force)
    from .pipeline import package_run
    from .recipe import PackageSection

    section = PackageSection(target=args.target, archive=args.archive, compress_embeddings=args.compress_embeddings)
    report = package_run(source.resolve(), section, output=args.output, force=args.force)["package"]
    where = Path(args.output or Path(args.run_dir) / LAYOUT.package)
    print(f"bundle: {where} ({report['bytes'] / 1e6:.1f} MB, {report['files']} files, verified)")
    if report["archive_bytes"]:
        print(f"archive: {where.with_name(report['archive'])} ({report['archive_bytes'] / 1e6:.1f} MB, "
              f"{100 * report['ratio']:.1f}% of the dense FP32 checkpoint)")
    print(f"run it: pofa-openvino predict {where} \"some text\"   (needs only: pip install pofa-openvino)")
    return 0


def _package_ovms(source: Path, output: str | None, force: bool) -> int:
    """``package --format ovms``: from a bundle, or from a run's bundle (``RUN_DIR/package``)."""
    from .runtime.bundle import BundleError, is_bundle
    from .runtime.ovms import docker_command, write_model_repository

    bundle = source if is_bundle(source) else source / LAYOUT.package
    if not is_bundle(bundle):
        raise BundleError(f"{source} is neither a bundle nor a run with one: run `pofa-openvino package "
                          f"{source}` first")
    out = Path(output) if output else source / "ovms" if bundle != source else source.with_name(f"{source.name}-ovms")
    report = write_model_repository(bundle, out, force=force)
    print(f"OVMS repository: {out} (model {report['name']!r}: strings in, {', '.join(report['outputs'])} out; "
          f"plugin_config {report['plugin_config']})")
    print(f"serve it: {docker_command(out.resolve())}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .runtime.bundle import Bundle

    for number, text in enumerate([*args.texts, *(args.pairs or [])], start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"text {number} is not valid UTF-8; pass texts as UTF-8") from None
    if args.pairs is not None and len(args.pairs) != len(args.texts):
        raise UsageError(f"--pair given {len(args.pairs)} times for {len(args.texts)} texts: give one per text")
    for text, result in zip(args.texts, Bundle(args.bundle).predict(args.texts, args.pairs), strict=True):
        try:
            line = json.dumps({"text": text, **result}, allow_nan=False)
        except ValueError:
            raise PofaError(f"{args.bundle}: the model's outputs for {text[:40]!r} are not finite (NaN or "
                            "infinity); `pofa-openvino verify` on the bundle says more") from None
        print(line)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .runtime.oip import Limits
    from .runtime.serve import ServeOptions, serve

    limits = Limits(args.max_request_bytes, args.max_texts, args.max_text_chars)
    options = ServeOptions(args.max_batch, args.max_delay_ms, args.max_queue, args.streams, limits)
    serve(args.bundle, args.host, args.port, options, args.name, args.graceful_timeout, args.access_log)
    return 0


def _cmd_verify(args: argparse.Namespace) -> Result:
    from .runtime.bundle import verify

    result = verify(args.bundle)
    if args.json:
        return {"ok": True, **result}
    runtime = result["runtime"]
    selftest = result["selftest"]
    print(f"{result['bundle']}: ok: {result['files']} files match the manifest; self-test {selftest['samples']} "
          f"samples, max difference {selftest['max_abs_diff']:.2g}")
    print(f"runtime: {runtime['cpu']}, AMX {'yes' if runtime['amx'] else 'no'}; {runtime['note']}")
    return 0


def _cmd_models(args: argparse.Namespace) -> Result:
    from dataclasses import asdict

    from rich.table import Table

    from .registry import COLUMNS, MODELS

    if args.json:
        return {"ok": True, "models": [asdict(model) for model in MODELS.values()]}
    table = Table(title="Intel PruneOFA checkpoints: published results (percent)")
    for column in ("hub id", "model", *(f"{c.title} ({'/'.join(c.metrics)})" for c in COLUMNS.values())):
        table.add_column(column, overflow="fold")
    for model in MODELS.values():
        cells = ["/".join(f"{100 * v:.2f}" for v in model.published[key].values()) if key in model.published else "-"
                 for key in COLUMNS]
        table.add_row(model.hub_id, model.describe(), *cells)
    _console().print(table)
    return 0


def _cmd_recipes(args: argparse.Namespace) -> Result:
    from rich.table import Table

    paths = sorted(Path(args.directory).glob("*.yaml"))
    if not paths:
        raise PofaError(f"{args.directory}: no recipes (*.yaml) there")
    listed = [_recipe_entry(path) for path in paths]
    if args.json:
        return {"ok": True, "directory": args.directory, "recipes": listed}
    table = Table(title=f"recipes in {args.directory}")
    for column in ("recipe", "model", "task", "expected (published)"):
        table.add_column(column, overflow="fold")
    for entry in listed:
        if entry["error"]:  # one broken recipe does not hide the others
            table.add_row(entry["file"], "-", "invalid", entry["error"])
        elif entry["task"] is None:
            table.add_row(entry["file"], entry["model"], "prune once (sparse pre-trained model)",
                          f"{100 * entry['prune_once_sparsity']:.0f}% sparse checkpoint")
        else:
            table.add_row(entry["file"], entry["model"], f"{entry['task']} ({entry['dataset'] or 'local files'})",
                          ", ".join(f"{k} {100 * v:.2f}" for k, v in (entry["expected"] or {}).items()) or "-")
    _console().print(table)
    return 0


def _recipe_entry(path: Path) -> dict[str, Any]:
    """What ``recipes`` shows of one file: its model, task and data and the result it should reproduce
    (the catalogue's, or the published one), or why it is invalid."""
    from .catalogue import entries
    from .recipe import load_recipe
    from .registry import published

    entry: dict[str, Any] = {"file": path.name, "name": None, "model": None, "task": None, "dataset": None,
                             "expected": None, "prune_once_sparsity": None, "error": None}
    try:
        spec = load_recipe(path)
    except PofaError as error:
        return {**entry, "error": str(error)}
    entry.update(name=spec.name, model=spec.model.name_or_path)
    if spec.data is None:
        return {**entry, "prune_once_sparsity": spec.pretrain.pruning.target_sparsity}
    expected = next((e.expected for e in entries() if e.name == spec.name), None)
    return {**entry, "task": spec.task, "dataset": spec.data.dataset,
            "expected": expected or published(spec.model.name_or_path, spec.data.dataset, spec.task)}


def _cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .catalogue import init_recipe
    from .data_recipe import DEFAULT_MODEL, recipe_for_files
    from .recipe import load_recipe
    from .rundir import write_text

    if bool(args.train) != bool(args.validation):
        raise UsageError("give both --train and --validation (your own files), or --model and --task")
    if args.train and args.task:
        raise UsageError("--task names a GLUE/SQuAD task; with --train and --validation the task is your files'")
    if not args.train and not (args.model and args.task):
        raise UsageError("give --model and --task, or --train and --validation")
    if args.train:
        out = Path(args.output or f"{Path(args.train).stem}.yaml")
        text, found = recipe_for_files(Path(args.train), Path(args.validation), out, args.model or DEFAULT_MODEL,
                                       args.text_columns, args.label_column, args.target)
        described = (f" ({found.train_rows} training rows, {len(found.labels)} labels, max_seq_length "
                     f"{found.max_seq_length})")
    else:
        name, text = init_recipe(args.model, args.task)
        out, described = Path(args.output or f"{name}.yaml"), ""
    if out.exists() and not args.force:
        raise PofaError(f"{out} exists; choose another file (-o) or pass --force to replace it")
    check = out.with_name(f".{out.name}.check")  # validated beside its destination (relative paths), then moved
    write_text(check, text)
    try:
        load_recipe(check)
        check.replace(out)
    finally:
        check.unlink(missing_ok=True)
    print(f"{out}: written{described}. Check it with `pofa-openvino run {out} --smoke`, then run it for real.")
    return 0


def _cmd_validate(args: argparse.Namespace) -> Result:
    from .pipeline import STAGES
    from .recipe import load_recipe

    if not args.json:
        for path in args.recipes:
            load_recipe(path, overrides=args.overrides)
            print(f"{path}: ok")
        return 0
    checked, code = [], 0
    for path in args.recipes:  # every file is checked, so one document answers for all of them
        try:
            spec = load_recipe(path, overrides=args.overrides)
        except PofaError as error:
            _print_error(error)
            checked.append({"file": path, "ok": False, "error": str(error), "exit_code": error.exit_code})
            code = max(code, error.exit_code)
            continue
        checked.append({"file": path, "ok": True, "name": spec.name, "task": spec.task,
                        "stages": [stage.name for stage in STAGES if stage.enabled(spec)]})
    return {"ok": not code, "exit_code": code, "recipes": checked}


COMMANDS = {"run": _cmd_run, "bench": _cmd_bench, "package": _cmd_package, "predict": _cmd_predict,
            "serve": _cmd_serve, "verify": _cmd_verify, "models": _cmd_models, "recipes": _cmd_recipes,
            "init": _cmd_init, "validate": _cmd_validate}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.debug, args.quiet)
    interrupts.install()
    as_json = getattr(args, "json", False)
    from .errors import os_errors

    try:  # os_errors: a read-only or full disk, in any verb, is one line (a closed pipe is handled below)
        with os_errors(), _stdout_to_stderr() if as_json else contextlib.nullcontext():
            result = _dispatch(args)
        if isinstance(result, dict):
            _print_json(result)
            return 0 if result["ok"] else int(result.get("exit_code", 1))
        return result
    except PofaError as exc:
        if args.debug:
            raise
        _print_error(exc)
        if as_json:
            _print_json({"ok": False, "error": str(exc), "exit_code": exc.exit_code})
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun with --resume to continue", file=sys.stderr)
        if as_json:
            _print_json({"ok": False, "error": "interrupted", "exit_code": 130})
        return 130
    except BrokenPipeError:  # `... | head -1` closed our stdout: stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _dispatch(args: argparse.Namespace) -> Result:
    """Run the verb. A toolkit verb whose libraries are missing (the base install) is one line and exit 2,
    not a traceback; a runtime verb's missing module is a broken install and is raised as it is."""
    try:
        return COMMANDS[args.verb](args)
    except ModuleNotFoundError as exc:
        if args.verb in RUNTIME_VERBS or (exc.name or "").partition(".")[0] == "pofa_openvino":
            raise
        raise UsageError(f"pofa-openvino {args.verb} needs the toolkit: pip install 'pofa-openvino[compress]' "
                         f"(no module named {exc.name!r})") from exc


def _print_error(exc: PofaError) -> None:
    """Bad input (exit 2) is its own message (``file:line: key: ...``); a failure says ``error:``."""
    print(f"error: {exc}" if exc.exit_code != 2 else str(exc), file=sys.stderr)


def _console() -> Any:
    """The console tables print on: on a terminal it fits the window; into a pipe or a file no cell is
    wrapped, so ``pofa-openvino models | grep ...`` finds every hub id whole on one line."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While a --json command runs, whatever else would reach stdout (a library's print, native code
    writing to file descriptor 1) goes to stderr: stdout carries the JSON document alone."""
    sys.stdout.flush()
    try:
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # streams replaced in-process (a test's capture)
        out = err = -1
    saved = os.dup(out) if out >= 0 else -1
    if saved >= 0:
        os.dup2(err, out)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved >= 0:
            os.dup2(saved, out)
            os.close(saved)


def _print_json(document: dict[str, Any]) -> None:
    """Strict JSON: NaN and infinities (a failed measurement) become null, never the bare tokens that
    JSON parsers reject; paths become strings."""
    print(json.dumps(_finite(document), indent=2, allow_nan=False, default=str))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
