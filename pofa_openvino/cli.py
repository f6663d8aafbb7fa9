"""The command line, thin over the Python API. Errors are one line; ``--debug`` shows tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import interrupts
from .errors import PofaError


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(
        prog="pofa-openvino",
        description="Prune Once for All sparse transformers on OpenVINO: fine-tune with INC pruning, "
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

    validate = verbs.add_parser("validate", help="check recipes without running them")
    validate.add_argument("recipes", nargs="+", help="recipe YAML files")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    return parser


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pofa_openvino").setLevel(level)


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .pipeline import run
    from .report import summary_rows

    result = run(args.recipe, output_dir=args.output, resume=args.resume, force=args.force,
                 overrides=args.overrides)
    table = Table(title=f"{result.report['recipe']['name']}: results", show_header=False)
    for name, value in summary_rows(result.report):
        table.add_row(name, value)
    console = Console()
    console.print(table)
    if result.reused:
        console.print(f"reused unchanged stages: {', '.join(result.reused)}")
    console.print(f"run directory: {result.run_dir}  (report.md, report.json, manifest.json)")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    for path in args.recipes:
        load_recipe(path, args.overrides)
        print(f"{path}: ok")
    return 0


COMMANDS = {"run": _cmd_run, "validate": _cmd_validate}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.debug, args.quiet)
    interrupts.install()
    try:
        return COMMANDS[args.verb](args)
    except PofaError as exc:
        if args.debug:
            raise
        print(f"error: {exc}" if exc.exit_code != 2 else str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
