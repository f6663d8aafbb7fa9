"""The ``bench`` command: benchmark whatever it is pointed at. A finished run is measured like its
recipe's benchmark stage and the result joins its report; an OpenVINO IR directory or a Hugging Face
checkpoint gets a report directory of its own. Why apart from :mod:`.bench`: this is the one place
that knows runs, exports and reports, so the measuring library below it stays light and acyclic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bench import Settings, Variant, benchmark, ir_variants, write_results
from .errors import UsageError
from .export import export_ir
from .pipeline import benchmark_run
from .report import markdown
from .rundir import LAYOUT, staged_dir, write_json, write_text
from .runtime.model import IR_FILE
from .runtime.overwrite import OutputKind, claim_output, marker_record, write_marker
from .runtime.tasks import task_of


def bench_target(target: str | Path, settings: Settings, *, output: str | Path | None = None,
                 force: bool = False, texts: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    """Benchmark a run directory (the result joins its report), an OpenVINO IR directory or a HF
    checkpoint (written to ``output``, default ``runs/bench-<name>``), also on ``texts`` when given (a
    run's default: its recipe's ``benchmark.texts``). Returns the report and its dir."""
    target = Path(target).resolve()
    if (target / LAYOUT.manifest).is_file() and (target / LAYOUT.recipe).is_file():
        return benchmark_run(target, settings, texts=texts), target
    out = Path(output or Path("runs") / f"bench-{target.name}").resolve()
    if (target / IR_FILE).is_file():
        _claim(out, force, REPORT_ENTRIES)
        variants = ir_variants(target, task_of(target))
    elif (target / "config.json").is_file():
        _claim(out, force, (*REPORT_ENTRIES, LAYOUT.ir_fp32))
        task = task_of(target)
        with staged_dir(out / LAYOUT.ir_fp32) as ir_dir:
            export_ir(str(target), ir_dir, task)
        variants = [Variant("torch_fp32", "torch", target, task), *ir_variants(out / LAYOUT.ir_fp32, task)]
    else:
        raise UsageError(f"{target} is not a run directory (manifest.json), an OpenVINO IR directory "
                        f"({IR_FILE}) or a Hugging Face checkpoint (config.json)")
    report = {"target": str(target), "benchmark": write_results(benchmark(variants, settings, texts=texts), out)}
    write_json(out / LAYOUT.report_json, report)
    write_text(out / LAYOUT.report_md, markdown(report))
    return report, out


REPORT_ENTRIES = (LAYOUT.report_json, LAYOUT.report_md, LAYOUT.benchmark)
MARKER = ".pofa-bench.json"  # what a bench command wrote into its output directory
BENCH_OUTPUT = OutputKind("a benchmark report", marker_record(MARKER), names=(*REPORT_ENTRIES, LAYOUT.ir_fp32),
                          shared=True)


def _claim(out: Path, force: bool, entries: tuple[str, ...]) -> None:
    """``out`` ready under the overwrite policy, and the entries this target writes recorded in it."""
    claim_output(out, BENCH_OUTPUT, force)
    write_marker(out, MARKER, list(entries))
