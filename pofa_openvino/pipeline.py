"""Stage runner: sequences the stages in a run directory, records the manifest, resumes.

A stage is reused on ``resume`` when it finished before and its fingerprint (its recipe sections,
the fingerprint of the stage before it, and for ``load`` the checksums of the inputs) is unchanged."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import report as report_md
from . import stages
from .distributed import World, join
from .errors import PofaError, StageError, os_errors
from .provenance import RUN_LIBRARIES, versions
from .recipe import Recipe, load_recipe
from .rundir import (
    LAYOUT,
    MANIFEST_FORMAT,
    claim,
    locked,
    outputs_present,
    read_json,
    sha256_tree,
    write_failure,
    write_json,
    write_text,
    written_entries,
)

if TYPE_CHECKING:
    from neural_compressor.config import WeightPruningConfig

    from .bench import Settings
    from .recipe import PackageSection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]
    run: Callable[[stages.StageContext], stages.StageOutput]
    enabled: Callable[[Recipe], bool] = lambda recipe: True
    collective: bool = False  # run by every training process (under torchrun / accelerate launch)


STAGES = (
    Stage("pretrain", ("model", "pretrain"), stages.pretrain, lambda r: r.pretrain is not None, collective=True),
    Stage("load", ("task", "model", "data"), stages.load, lambda r: r.data is not None),
    Stage("teacher", ("training", "distillation"), stages.teacher,
          lambda r: r.distillation is not None and r.distillation.trains_teacher, collective=True),
    Stage("train", ("training", "pruning", "distillation"), stages.train, lambda r: r.training is not None,
          collective=True),
    Stage("evaluate", (), stages.evaluate, lambda r: r.data is not None),
    Stage("export", (), stages.export, lambda r: r.quantization is not None or r.export is not None),
    Stage("quantize", ("quantization", "export"), stages.quantize,
          lambda r: r.quantization is not None or r.export is not None),
    Stage("benchmark", ("benchmark",), stages.benchmark, lambda r: r.benchmark is not None),
    Stage("package", ("package",), stages.package, lambda r: r.package is not None),
)


@dataclass
class RunResult:
    """What :func:`run` did: the run directory, its report and manifest (as written there), and which
    stages ran and which were reused from an earlier run (``--resume``)."""

    run_dir: Path
    report: dict[str, Any]
    manifest: dict[str, Any]
    ran: list[str]
    reused: list[str]
    rank: int = 0  # another rank than 0 only took part in the training stages: no report, no manifest


def run(recipe: str | Path | dict[str, Any] | Recipe, *, output_dir: str | Path | None = None,
        resume: bool = False, force: bool = False, overrides: list[str] | None = None,
        pruning: WeightPruningConfig | None = None, smoke: bool = False) -> RunResult:
    """Run every enabled stage of ``recipe`` into ``output_dir`` (default ``runs/<name>``).

    ``pruning`` is an INC ``WeightPruningConfig`` that replaces the recipe's ``pruning`` section.
    ``smoke`` swaps in a tiny model and a few generated rows of the task's format (no hub, a minute).

    Launched by ``torchrun`` or ``accelerate launch``, every process calls this: rank 0 runs the
    pipeline and the others join it for the training stages. A read-only output directory or a full
    disk is one :class:`~pofa_openvino.errors.OutputError` line, inside a stage or outside."""
    spec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides=overrides)
    world = join()
    if not world.is_main:
        return _follow(world)
    with _Orders(world) as orders, os_errors(output=_run_dir(spec, output_dir)):
        return _lead(spec, orders, output_dir, resume, force, pruning, smoke)


def _run_dir(spec: Recipe, output_dir: str | Path | None) -> Path:
    """Where a run writes: ``output_dir``, else ``runs/<name>``."""
    return Path(output_dir or Path("runs") / spec.name).resolve()


def _lead(spec: Recipe, orders: _Orders, output_dir: str | Path | None, resume: bool, force: bool,
          pruning: WeightPruningConfig | None, smoke: bool) -> RunResult:
    if pruning is not None:
        from .prune import section_from_inc

        spec = spec.model_copy(update={"pruning": section_from_inc(pruning)})  # validated: it needs `training`
    run_dir = _run_dir(spec, output_dir)
    with locked(run_dir):
        return _run_in(spec, orders, run_dir, claim(run_dir, spec.name, resume, force), smoke)


def _run_in(spec: Recipe, orders: _Orders, run_dir: Path, previous: dict[str, Any] | None, smoke: bool) -> RunResult:
    """Every enabled stage, in order, in the claimed and locked ``run_dir``."""
    if smoke:
        from .smoke import smoke_recipe

        spec = smoke_recipe(spec, run_dir / LAYOUT.smoke)
    manifest = _new_manifest(spec, previous)
    write_text(run_dir / LAYOUT.recipe, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    ctx = stages.StageContext(recipe=spec, run_dir=run_dir, outputs={}, world=orders.world)
    fingerprint, ran, reused = _input_fingerprint(spec, manifest), [], []
    enabled = [s for s in STAGES if s.enabled(spec)]
    last_collective = max((i for i, s in enumerate(enabled) if s.collective), default=-1)
    for index, stage in enumerate(enabled):
        fingerprint = _fingerprint(stage, spec, fingerprint)
        old = (previous or {}).get("stages", {}).get(stage.name, {})
        if not ran and old.get("status") == "done" and old.get("fingerprint") == fingerprint \
                and outputs_present(run_dir, old.get("outputs", {})):  # after a stage reran, the rest rerun
            log.info("stage %s: unchanged since %s, reused", stage.name, old.get("finished"))
            manifest["stages"][stage.name] = old
            ctx.outputs[stage.name] = old["outputs"]
            reused.append(stage.name)
        else:
            with orders.joined(stage, spec, run_dir, ctx.outputs, fingerprint):
                _run_stage(stage, ctx, manifest, fingerprint, run_dir)
            ran.append(stage.name)
        if index == last_collective:
            orders.release()  # the other processes are done: what follows runs here alone
        report = ctx.report = _write_report(run_dir, manifest, spec)
    return RunResult(run_dir=run_dir, report=report, manifest=manifest, ran=ran, reused=reused)


class _Orders:
    """Rank 0 tells the other processes which collective stage to run with it, then releases them
    (also when it fails between stages, so none waits for an order that will not come). A failure
    inside a collective stage releases nobody: the others are mid-stage, and the launcher stops them
    when rank 0 exits."""

    def __init__(self, world: World):
        self.world, self.open, self.in_stage = world, world.size > 1, False

    @contextmanager
    def joined(self, stage: Stage, spec: Recipe, run_dir: Path, outputs: dict[str, Any],
               fingerprint: str) -> Iterator[None]:
        """Run ``stage`` here and, when it is collective, on every other rank too."""
        if not (stage.collective and self.open):
            yield
            return
        self.world.broadcast((stage.name, spec, run_dir, outputs, fingerprint))
        self.in_stage = True
        yield
        self.in_stage = False

    def release(self) -> None:
        if self.open and not self.in_stage:
            self.world.broadcast(None)
            self.open = False

    def __enter__(self) -> _Orders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _follow(world: World) -> RunResult:
    """A rank other than 0: run each collective stage rank 0 orders, with its inputs, until released."""
    ran, run_dir = [], Path()
    while (order := world.broadcast()) is not None:
        name, spec, run_dir, outputs, fingerprint = order
        stage = next(s for s in STAGES if s.name == name)
        stage.run(stages.StageContext(recipe=spec, run_dir=run_dir, outputs=outputs, fingerprint=fingerprint,
                                      world=world))
        ran.append(name)
    return RunResult(run_dir=run_dir, report={}, manifest={}, ran=ran, reused=[], rank=world.rank)


def benchmark_run(run_dir: Path, settings: Settings, *, texts: list[str] | None = None) -> dict[str, Any]:
    """The ``bench`` command on a finished run: measured like the recipe's benchmark stage and recorded
    in the manifest as that stage (with no fingerprint, so a recipe's own benchmark stage reruns). Real
    text: ``texts``, else the recipe's ``benchmark.texts`` (its evaluation split by default)."""
    from .bench import benchmark_run_dir
    from .data import load_task_data
    from .stages import benchmark_texts

    manifest, spec, done = _finished_run(run_dir)
    checkpoint = run_dir / done["train"]["model_dir"] if "train" in done else Path(done["load"]["model_path"])
    if texts is None and spec.benchmark is not None and spec.benchmark.texts is not None:
        texts = benchmark_texts(spec.benchmark.texts, load_task_data(spec.task, spec.data))
    began, started = time.perf_counter(), _now()
    result = benchmark_run_dir(run_dir, checkpoint, spec.task, settings, texts)
    return _record(run_dir, manifest, spec, "benchmark", started, began, {"benchmark": result})


def package_run(run_dir: Path, section: PackageSection, *, output: str | Path | None = None,
                force: bool = False) -> dict[str, Any]:
    """The ``package`` command on a finished run: the bundle (default ``RUN_DIR/package``), recorded in
    the manifest as the package stage."""
    from .package import BUNDLE_OUTPUT, check_archive
    from .runtime.overwrite import check_output
    from .stages import StageContext, package_into

    manifest, spec, done = _finished_run(run_dir)
    out = Path(output).resolve() if output else run_dir / LAYOUT.package
    if output:  # the default is the run's own entries; the bundle replaces them whole once verified
        check_output(out, BUNDLE_OUTPUT, force)
        if section.archive:
            check_archive(out, force)
    ctx = StageContext(recipe=spec.model_copy(update={"package": section}), run_dir=run_dir, outputs=done,
                       report=read_json(run_dir / LAYOUT.report_json))
    began, started = time.perf_counter(), _now()
    return _record(run_dir, manifest, spec, "package", started, began, package_into(ctx, out).report)


def _finished_run(run_dir: Path) -> tuple[dict[str, Any], Recipe, dict[str, Any]]:
    """A run directory's manifest, recipe and the outputs of its finished stages."""
    manifest = read_json(run_dir / LAYOUT.manifest)
    spec = load_recipe(run_dir / LAYOUT.recipe)
    done = {name: entry["outputs"] for name, entry in manifest["stages"].items() if entry.get("status") == "done"}
    if "load" not in done:
        raise PofaError(f"{run_dir}: the run's load stage has not finished; run the recipe first")
    return manifest, spec, done


def _record(run_dir: Path, manifest: dict[str, Any], spec: Recipe, stage: str, started: str, began: float,
            report: dict[str, Any]) -> dict[str, Any]:
    manifest["stages"][stage] = {"status": "done", "fingerprint": "", "started": started, "finished": _now(),
                                 "seconds": round(time.perf_counter() - began, 2), "outputs": {}, "report": report}
    write_json(run_dir / LAYOUT.manifest, manifest)
    return _write_report(run_dir, manifest, spec)


def _run_stage(stage: Stage, ctx: stages.StageContext, manifest: dict[str, Any], fingerprint: str,
               run_dir: Path) -> None:
    entry = manifest["stages"][stage.name] = {"status": "running", "fingerprint": fingerprint,
                                              "started": _now()}
    write_json(run_dir / LAYOUT.manifest, manifest)
    log.info("stage %s: started", stage.name)
    ctx.fingerprint = fingerprint
    began = time.perf_counter()
    try:
        result = stage.run(ctx)
    except BaseException as exc:
        disk = write_failure(exc, run_dir)  # a full or read-only disk, said as such (not "iostream error")
        cause = str(disk) if disk else " ".join(f"{type(exc).__name__}: {exc}".split())
        entry.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=cause,
                     seconds=round(time.perf_counter() - began, 2))
        try:
            write_json(run_dir / LAYOUT.manifest, manifest)
        except OSError as error:  # the disk that failed the stage may fail this too: the stage's error counts
            log.debug("the failure of stage %s is not recorded in the manifest: %s", stage.name, error)
        if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, PofaError) and disk is None):
            raise
        raise StageError(f"stage {stage.name} failed: {cause}. Earlier stages are kept in {run_dir}; fix the "
                         "cause and rerun with --resume") from exc
    entry.update(status="done", finished=_now(), seconds=round(time.perf_counter() - began, 2),
                 outputs=result.outputs, report=result.report)
    ctx.outputs[stage.name] = result.outputs
    write_json(run_dir / LAYOUT.manifest, manifest)
    log.info("stage %s: done in %.1f s", stage.name, entry["seconds"])


def _fingerprint(stage: Stage, recipe: Recipe, before: str) -> str:
    """Values left at their defaults are not part of it: a release that adds a setting (with a default
    that keeps the old behaviour) does not make ``--resume`` redo finished stages."""
    sections = {name: getattr(recipe, name) for name in stage.sections}
    payload = json.dumps({"stage": stage.name, "before": before,
                          "sections": {k: v.model_dump(mode="json", exclude_defaults=True) if hasattr(v, "model_dump")
                                       else v
                                       for k, v in sections.items()}}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _input_fingerprint(recipe: Recipe, manifest: dict[str, Any]) -> str:
    """Checksums of the local inputs (model directory, data files), recorded in the manifest."""
    from .registry import resolve_model

    inputs: dict[str, str] = {}
    candidates = [recipe.model.name_or_path, *(recipe.pretrain.text_files if recipe.pretrain else []),
                  recipe.pretrain.teacher if recipe.pretrain else None,
                  recipe.data.train_file if recipe.data else None, recipe.data.validation_file if recipe.data else None,
                  recipe.distillation.teacher if recipe.distillation and not recipe.distillation.trains_teacher
                  else None]
    for ref in filter(None, candidates):
        try:
            path = Path(resolve_model(ref))
        except PofaError:
            path = Path(ref)
        inputs[ref] = sha256_tree(path) if path.exists() else "hub (not downloaded yet)"
    manifest["inputs"] = inputs
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _new_manifest(spec: Recipe, previous: dict[str, Any] | None) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "recipe_name": spec.name, "recipe_source": spec.source,
            "recipe_sha256": spec.digest(), "created": (previous or {}).get("created", _now()), "updated": _now(),
            "seed": spec.training.seed if spec.training else None,
            "versions": versions(RUN_LIBRARIES), "inputs": {}, "stages": {}}


def _write_report(run_dir: Path, manifest: dict[str, Any], spec: Recipe) -> dict[str, Any]:
    """``report.json`` is derived: the recipe, each finished stage's sections in order, and timings.
    The manifest records what the run has written, which is all a later ``--force`` may remove."""
    report: dict[str, Any] = {"recipe": {"name": spec.name, "source": spec.source,
                                         "sha256": manifest["recipe_sha256"]}}
    for entry in manifest["stages"].values():
        if entry.get("status") == "done":
            report = report_md.merged(report, entry.get("report", {}))
    report["timings"] = {name: entry.get("seconds") for name, entry in manifest["stages"].items()}
    write_json(run_dir / LAYOUT.report_json, report)
    write_text(run_dir / LAYOUT.report_md, report_md.markdown(report))
    manifest["written"] = written_entries(run_dir)
    write_json(run_dir / LAYOUT.manifest, manifest)
    return report


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
