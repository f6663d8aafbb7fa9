"""The pipeline's stages. Each reads what earlier stages left on disk and returns its outputs and the
report sections it measured; heavy libraries are imported here, inside the stage that needs them."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .distributed import SOLO, World
from .recipe import Recipe
from .rundir import LAYOUT

log = logging.getLogger(__name__)


@dataclass
class StageOutput:
    outputs: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """What a stage may read: the recipe, the run directory and the outputs of earlier stages."""

    recipe: Recipe
    run_dir: Path
    outputs: dict[str, dict[str, Any]]
    fingerprint: str = ""  # of the stage now running: what its own partial state must match to be resumed
    report: dict[str, Any] = field(default_factory=dict)  # report.json as the finished stages left it
    world: World = SOLO  # the training processes (training stages run on all of them; rank 0 writes)

    @cached_property
    def data(self) -> Any:
        from .data import load_task_data

        return load_task_data(self.recipe.task, self.recipe.data)

    def model_dir(self) -> str:
        """The newest model: the fine-tuned checkpoint if training ran, else the loaded one."""
        if "train" in self.outputs:
            return str(self.run_dir / self.outputs["train"]["model_dir"])
        return self.outputs["load"]["model_path"]

    def prunable(self) -> Any:
        """The layer-name filter of the recipe's pruning section (INC's defaults when it has none)."""
        from .prune import prunable_matcher
        from .recipe import PruningSection

        return prunable_matcher(self.recipe.pruning or PruningSection())


def pretrain(ctx: StageContext) -> StageOutput:
    """Prune once: the sparse pre-trained checkpoint in ``pretrained/``, which the task stages then start
    from. Each finished epoch leaves ``pretrain-state/``; a resumed run continues from it."""
    from .errors import RecipeError
    from .pretrain import prune_once

    state_dir = ctx.run_dir / LAYOUT.pretrain_state
    try:
        model = ctx.recipe.model
        result = prune_once(model.name_or_path, section=ctx.recipe.pretrain, out_dir=ctx.run_dir / LAYOUT.pretrained,
                            state_dir=state_dir, fingerprint=ctx.fingerprint, world=ctx.world,
                            revision=model.revision, trust_remote_code=model.trust_remote_code)
    except RecipeError as error:  # found once the model and text are read: name the recipe file too
        raise RecipeError(error.detail, source=ctx.recipe.source, key=error.key) from None
    if ctx.world.is_main:
        shutil.rmtree(state_dir, ignore_errors=True)
    return StageOutput(outputs={"model_dir": LAYOUT.pretrained}, report=result.report)


def load(ctx: StageContext) -> StageOutput:
    """Resolve the model (the pruned-once one when the recipe pre-trains), check the data, and measure
    the sparsity the checkpoint arrives with."""
    from .modeling import load_model, load_tokenizer
    from .prune import sparsity_report
    from .registry import published, resolve_model
    from .runtime.tasks import task_of_architectures

    recipe = ctx.recipe
    pretrained = ctx.outputs.get("pretrain")
    path = str(ctx.run_dir / pretrained["model_dir"]) if pretrained else resolve_model(recipe.model.name_or_path)
    _warn_unlocked(recipe, path)
    data = ctx.data
    load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    model = load_model(path, recipe.task, data.labels, recipe.model.revision, recipe.model.trust_remote_code)
    _check_structured(recipe, model)
    sparsity = sparsity_report(model, ctx.prunable())
    task_head = task_of_architectures(model.config.architectures or []) is not None
    log.info("loaded model sparsity (prunable Linear layers): %.2f%%", 100 * sparsity["overall"])
    report = {
        "model": {"name_or_path": recipe.model.name_or_path, "path": path, "architecture": model.config.model_type,
                  "parameters": sum(p.numel() for p in model.parameters()), "labels": data.labels,
                  "published": published(recipe.model.name_or_path, recipe.data.dataset, recipe.task)},
        "sparsity": {**sparsity, "loaded_overall": sparsity["overall"]},
    }
    return StageOutput(outputs={"model_path": path, "sparsity_overall": sparsity["overall"], "task_head": task_head},
                       report=report)


def _check_structured(recipe: Recipe, model: Any) -> None:
    """Heads and neurons are removed by layer name: refuse, before training, an architecture whose
    layers this tool does not know."""
    from .structure import LAYOUTS, layout_of

    keys = recipe.pruning.structured_keys() if recipe.pruning is not None else []
    if keys and layout_of(model.config.model_type) is None:
        raise recipe.error(f"pruning.{keys[0]}", f"heads and FFN neurons can be removed from {', '.join(LAYOUTS)} "
                           f"models; {recipe.model.name_or_path} is {model.config.model_type}: use an unstructured "
                           "or NxM pattern")


def _warn_unlocked(recipe: Recipe, path: str) -> None:
    """A pruned-once checkpoint fine-tuned without ``pattern_lock`` would regrow its zeros."""
    from .pretrain import pruned_once

    record = pruned_once(path)
    if record and recipe.training is not None and (recipe.pruning is None or
                                                   recipe.pruning.pruning_type != "pattern_lock"):
        log.warning("%s was pruned once to %.0f%% sparsity; without `pruning: {pruning_type: pattern_lock}` "
                    "fine-tuning will fill its zeros", path, 100 * record["sparsity"])


def teacher(ctx: StageContext) -> StageOutput:
    """``distillation.teacher: auto``: fine-tune the recipe's model (the dense one, before any prune-once)
    on the recipe's own data, without pruning, into ``teacher/`` and evaluate it; the train stage
    distils from it (and, without prune-once, starts the student from its weights). Each finished
    epoch leaves ``teacher-state/``; a resumed run continues from it."""
    from .evaluate import evaluate_torch
    from .registry import resolve_model
    from .rundir import staged_dir
    from .train import fine_tune

    recipe = ctx.recipe
    section = recipe.distillation.teacher_training or recipe.training
    state_dir = ctx.run_dir / LAYOUT.teacher_state
    if recipe.pretrain is None and ctx.outputs["load"]["sparsity_overall"] >= DENSE:
        log.warning("the teacher starts from a %.0f%%-sparse checkpoint: fine-tuning refills its zeros, but a "
                    "teacher fine-tuned from a dense model is a better one (give it as distillation.teacher)",
                    100 * ctx.outputs["load"]["sparsity_overall"])
    model, tokenizer = _start(ctx, state_dir, resolve_model(recipe.model.name_or_path), section.seed)
    log.info("teacher: fine-tuning the dense model on the task first (distillation.teacher: auto)")
    result = fine_tune(model, tokenizer, ctx.data, section, recipe.data.max_seq_length, checkpoint_dir=state_dir,
                       fingerprint=ctx.fingerprint, world=ctx.world)
    if ctx.world.is_main:
        with staged_dir(ctx.run_dir / LAYOUT.teacher) as out:
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        shutil.rmtree(state_dir, ignore_errors=True)
    split = next(iter(ctx.data.eval))
    metrics = evaluate_torch(model, tokenizer, ctx.data, split, _eval_batch(recipe), recipe.data.max_seq_length)
    log.info("teacher (dense, %s): %s", split, metrics)
    return StageOutput(outputs={"model_dir": LAYOUT.teacher, "metrics": metrics},
                       report={"teacher": {"training": vars(result), "split": split, "torch_fp32": metrics}})


def _start(ctx: StageContext, state_dir: Path, fresh: str, seed: int) -> tuple[Any, Any]:
    """The model a training stage starts from: its own resumable state when it has one, else ``fresh``."""
    from .checkpoint import resumable
    from .modeling import load_model, load_tokenizer
    from .train import seed_everything

    recipe = ctx.recipe
    seed_everything(seed)  # before loading: a new task head is initialised at random
    path = str(state_dir) if resumable(state_dir, ctx.fingerprint) else fresh
    tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    model = load_model(path, recipe.task, ctx.data.labels, recipe.model.revision, recipe.model.trust_remote_code)
    return model, tokenizer


def train(ctx: StageContext) -> StageOutput:
    """Fine-tune (with INC pruning and distillation when the recipe asks) into ``checkpoint/``; with a
    teacher trained in this run (and no prune-once checkpoint), the student starts from its weights.

    Each finished epoch leaves ``train-state/``; a resumed run continues from it, then removes it."""
    from .prune import inc_config, sparsity_report
    from .rundir import staged_dir
    from .train import fine_tune, hidden_state_mismatch

    recipe = ctx.recipe
    state_dir = ctx.run_dir / LAYOUT.train_state
    trained = ctx.outputs.get("teacher")
    teacher_path = str(ctx.run_dir / trained["model_dir"]) if trained else (
        recipe.distillation.teacher if recipe.distillation is not None else None)
    start = teacher_path if trained and recipe.pretrain is None else ctx.outputs["load"]["model_path"]
    model, tokenizer = _start(ctx, state_dir, start, recipe.training.seed)
    teacher = _teacher(teacher_path, recipe.task, ctx.data) if teacher_path else None
    hidden = recipe.distillation.hidden_states if recipe.distillation is not None else None
    problem = hidden_state_mismatch(model.config, teacher.config, hidden.layers) if hidden and teacher else None
    if problem:
        raise recipe.error("distillation.hidden_states", problem)
    pruning = inc_config(recipe.pruning, model.config.model_type) if recipe.pruning is not None else None
    result = fine_tune(model, tokenizer, ctx.data, recipe.training, recipe.data.max_seq_length, pruning,
                       teacher, recipe.distillation, state_dir, ctx.fingerprint, ctx.world)
    structure = _slim(ctx, model, tokenizer) if recipe.pruning is not None and recipe.pruning.structured else None
    if ctx.world.is_main:
        with staged_dir(ctx.run_dir / LAYOUT.checkpoint) as out:
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        shutil.rmtree(state_dir, ignore_errors=True)
    sparsity = sparsity_report(model, ctx.prunable())
    report = {"training": vars(result),
              "sparsity": {**sparsity, "loaded_overall": ctx.outputs["load"]["sparsity_overall"]}}
    if structure is not None:
        report["structure"] = structure
    return StageOutput(outputs={"model_dir": LAYOUT.checkpoint}, report=report)


SLIM_TOLERANCE = 1e-4
FLOPS_SEQUENCE_LENGTH = 128


def _slim(ctx: StageContext, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Remove the heads and FFN neurons pruning zeroed, checked to leave the logits unchanged on
    evaluation samples; what each layer keeps and the FLOPs at 128 tokens go into the report."""
    from .errors import StageError
    from .evaluate import task_outputs, torch_predictor
    from .structure import linear_flops, slim

    recipe, data = ctx.recipe, ctx.data
    split, length, batch = next(iter(data.eval)), recipe.data.max_seq_length, _eval_batch(recipe)
    items = data.eval_items(split, tokenizer, length)[:PARITY_SAMPLES]
    masked = task_outputs(torch_predictor(model), tokenizer, data, items, batch, length)
    before = linear_flops(model, FLOPS_SEQUENCE_LENGTH)
    parameters = sum(p.numel() for p in model.parameters())
    record = slim(model, recipe.pruning.slim_multiple)
    slimmed = task_outputs(torch_predictor(model), tokenizer, data, items, batch, length)
    diff = _max_difference(masked, slimmed)
    if diff > SLIM_TOLERANCE:
        raise StageError(f"slimming changed the logits by {diff:.2e} (tolerance {SLIM_TOLERANCE:g}) on {len(items)} "
                         "samples: the removed heads or neurons were not all zero")
    after = linear_flops(model, FLOPS_SEQUENCE_LENGTH)
    heads = sum(layer["heads"] for layer in record["layers"])
    neurons = sum(layer["intermediate_size"] for layer in record["layers"])
    log.info("slimmed: %d heads and %d FFN neurons kept; %.2f GFLOPs -> %.2f at %d tokens (%.2fx fewer); max "
             "|logit difference| %.1e", heads, neurons, before / 1e9, after / 1e9, FLOPS_SEQUENCE_LENGTH,
             before / after, diff)
    return {**record, "multiple": recipe.pruning.slim_multiple, "sequence_length": FLOPS_SEQUENCE_LENGTH,
            "flops_before": before, "flops_after": after, "flops_ratio": round(before / after, 4),
            "parameters_before": parameters, "parameters_after": sum(p.numel() for p in model.parameters()),
            "max_abs_logit_diff": diff, "samples": len(items)}


def _teacher(path: str, task: str, data: Any) -> Any:
    """The dense teacher, checked to answer the same task (same label count for classification)."""
    from .errors import PofaError
    from .modeling import load_model

    teacher = load_model(path, task)
    if data.labels is not None and teacher.config.num_labels != len(data.labels):
        raise PofaError(f"distillation.teacher has {teacher.config.num_labels} labels, the task has "
                        f"{len(data.labels)}: the teacher must be fine-tuned on the same task")
    if data.labels is not None:
        names = [str(teacher.config.id2label[i]).lower() for i in range(teacher.config.num_labels)]
        task = [label.lower() for label in data.labels]
        if sorted(names) == sorted(task) and names != task:
            raise PofaError(f"distillation.teacher orders its labels {names}, the task {task}: its logits "
                            "would teach the wrong classes; use a teacher with the task's label order")
        if sorted(names) != sorted(task):
            log.warning("distillation.teacher names its labels %s, the task %s: the order cannot be checked; make "
                        "sure label i means the same class for both", names, task)
    return teacher


def evaluate(ctx: StageContext) -> StageOutput:
    """The task metric of the newest torch model on every evaluation split."""
    scores = _scores(ctx, ctx.model_dir(), list(ctx.data.eval))
    primary = next(iter(scores))
    accuracy = {"metric": ctx.data.metric, "split": primary,
                "eval_samples": len(ctx.data.eval[primary]), "torch_fp32": scores[primary]}
    if len(scores) > 1:
        accuracy["splits"] = scores
    log.info("evaluation (%s): %s", primary, scores[primary])
    reference = _dense_reference(ctx, primary)
    if reference is not None:
        accuracy.update(dense_reference=reference,
                        gap=_gap(ctx, reference["torch_fp32"], scores[primary], "torch_fp32"))
    return StageOutput(outputs={"torch_fp32": scores[primary],
                                "dense_reference": reference["torch_fp32"] if reference else None},
                       report={"accuracy": accuracy})


def _scores(ctx: StageContext, path: str, splits: list[str]) -> dict[str, dict[str, float]]:
    """The task metrics of the torch model at ``path`` on ``splits``. A path that is the recipe's own
    model keeps its revision and remote-code choice."""
    from .evaluate import evaluate_torch
    from .modeling import load_model, load_tokenizer

    recipe = ctx.recipe
    tokenizer = load_tokenizer(path, recipe.model.revision, recipe.model.trust_remote_code)
    model = load_model(path, recipe.task, revision=recipe.model.revision,
                       trust_remote_code=recipe.model.trust_remote_code)
    return {split: evaluate_torch(model, tokenizer, ctx.data, split, _eval_batch(recipe), recipe.data.max_seq_length)
            for split in splits}


DENSE = 0.05  # below this measured sparsity a loaded model counts as dense


def _dense_reference(ctx: StageContext, split: str) -> dict[str, Any] | None:
    """What a pruned model is measured against, in this run: the teacher the run trained, the given
    teacher, or else the loaded model itself when it is a dense model already fine-tuned on the task
    (evaluated as loaded, before pruning). None when the run does not prune or has no such model."""
    recipe, loaded = ctx.recipe, ctx.outputs["load"]
    if recipe.pruning is None and recipe.pretrain is None:
        return None
    trained = ctx.outputs.get("teacher")
    if trained is not None:
        return {"source": "the teacher trained in this run (teacher/)", "torch_fp32": trained["metrics"]}
    if recipe.distillation is not None:
        path, source = recipe.distillation.teacher, f"distillation.teacher ({recipe.distillation.teacher})"
    elif recipe.pretrain is None and loaded["sparsity_overall"] < DENSE and loaded.get("task_head"):
        path, source = loaded["model_path"], "the loaded model, before pruning"
    else:
        log.info("no dense reference in this run: the loaded model is sparse or not fine-tuned on the task; "
                 "`distillation.teacher: auto` trains one")
        return None
    metrics = _scores(ctx, path, [split])[split]
    log.info("dense reference, %s: %s", source, metrics)
    return {"source": source, "torch_fp32": metrics}


def _gap(ctx: StageContext, reference: dict[str, float], measured: dict[str, float], label: str) -> dict[str, Any]:
    """Points (of each metric, in %) the pruned model loses to the dense reference; past the recipe's
    ``report.max_gap`` the run says so and names the levers."""
    from .recipe import ReportSection

    max_gap = (ctx.recipe.report or ReportSection()).max_gap
    points = {k: round(100 * (reference[k] - measured[k]), 4) for k in measured if k in reference}
    exceeded = any(value > max_gap for value in points.values())
    if exceeded:
        worst = max(points, key=points.__getitem__)
        teacher = "" if ctx.recipe.distillation else "; distil from a dense teacher (distillation.teacher: auto)"
        log.warning("%s is %.2f points of %s below its dense reference (report.max_gap %.1f): recover longer "
                    "(training.num_train_epochs, an earlier pruning end_step), distil purely (distillation.alpha: "
                    "0), prune less (target_sparsity), or remove heads and neurons instead (pruning.ffn2_sparsity, "
                    "mha_sparsity)%s", label, points[worst], worst, max_gap, teacher)
    return {"measured": label, "points": points, "max_gap_points": max_gap, "exceeded": exceeded}


PARITY_SAMPLES = 32
PARITY_TOLERANCE = 1e-3


def export(ctx: StageContext) -> StageOutput:
    """FP32 OpenVINO IR of the newest model into ``openvino-fp32/``, checked against torch: logits on
    evaluation samples (OpenVINO forced to f32) and the task metric."""
    from .evaluate import openvino_predictor, score, task_outputs, torch_predictor
    from .export import export_ir
    from .modeling import load_model, load_tokenizer
    from .rundir import staged_dir
    from .runtime.model import SparseModel

    recipe, data = ctx.recipe, ctx.data
    with staged_dir(ctx.run_dir / LAYOUT.ir_fp32) as out:
        export_ir(ctx.model_dir(), out, recipe.task)
    ir = SparseModel(ctx.run_dir / LAYOUT.ir_fp32, {"INFERENCE_PRECISION_HINT": "f32"})
    tokenizer = load_tokenizer(ctx.model_dir())
    model = load_model(ctx.model_dir(), recipe.task)
    split, length, batch = next(iter(data.eval)), recipe.data.max_seq_length, _eval_batch(recipe)
    items = data.eval_items(split, tokenizer, length)[:PARITY_SAMPLES]
    expected = task_outputs(torch_predictor(model), tokenizer, data, items, batch, length)
    got = task_outputs(openvino_predictor(ir), tokenizer, data, items, batch, length)
    diff = _max_difference(expected, got)
    if diff >= PARITY_TOLERANCE:
        log.warning("OpenVINO FP32 and torch disagree: max |logit difference| %.2e on %d samples", diff, len(items))
    metrics = score(openvino_predictor(ir), tokenizer, data, split, batch, length)
    log.info("OpenVINO FP32 (f32 precision): %s; max |logit difference| vs torch %.2e", metrics, diff)
    report = {"accuracy": {"openvino_fp32": metrics},
              "parity": {"max_abs_logit_diff": diff, "samples": len(items), "tolerance": PARITY_TOLERANCE,
                         "ok": diff < PARITY_TOLERANCE}}
    return StageOutput(outputs={"ir_dir": LAYOUT.ir_fp32}, report=report)


def quantize(ctx: StageContext) -> StageOutput:
    """The deployable ``openvino/`` directory: INT8 IR (NNCF), every float zero checked, the runtime
    config with the sparse weight decompression rate, and what the CPU then actually ran."""
    import openvino as ov

    from .errors import StageError
    from .evaluate import openvino_predictor, score
    from .model_card import write_ir_card
    from .modeling import load_model, load_tokenizer
    from .prune import linear_weights, sparsity_report
    from .quantize import calibration_batches, quantize_ir, zero_preservation
    from .recipe import ExportSection, QuantizationSection
    from .rundir import staged_dir
    from .runtime.model import IR_FILE, SparseModel, int8_weights, write_runtime_config

    recipe, data = ctx.recipe, ctx.data
    section = recipe.quantization or QuantizationSection(approach="none")
    fp32_dir = ctx.run_dir / ctx.outputs["export"]["ir_dir"]
    tokenizer = load_tokenizer(ctx.model_dir())
    model = load_model(ctx.model_dir(), recipe.task)
    float_weights = {name: w.detach().numpy() for name, w in linear_weights(model).items()}
    with staged_dir(ctx.run_dir / LAYOUT.ir) as out:
        for item in fp32_dir.iterdir():
            if not item.name.startswith("openvino_model."):
                shutil.copy2(item, out / item.name)
        # Only static INT8 and QAT calibrate activations; weight-only INT8 needs no data.
        calibration = (calibration_batches(data, tokenizer, recipe.data.max_seq_length,
                                           section.calibration_sampling_size)
                       if section.approach in ("static", "qat") else [])
        qat = None
        if section.approach == "none":
            ov.save_model(ov.Core().read_model(fp32_dir / IR_FILE), out / IR_FILE)
        elif section.approach == "qat":
            qat = _quantization_aware_training(ctx, tokenizer, calibration, out)
        else:
            calibration = [{name: value.numpy() for name, value in batch.items()} for batch in calibration]
            samples = f", {len(calibration)} calibration samples" if calibration else ""
            log.info("INT8 (%s)%s", section.approach, samples)
            validation = (_validation(data, tokenizer, recipe.data.max_seq_length)
                          if section.accuracy_criterion else None)
            quantize_ir(fp32_dir, out / IR_FILE, section, calibration, validation)
        int8 = zero_preservation(float_weights, int8_weights(ov.Core().read_model(out / IR_FILE)))
        revived = {name: layer["revived_zeros"] for name, layer in int8.items() if layer["revived_zeros"]}
        if revived:
            raise StageError("INT8 quantization turned exact zeros of the float weights into non-zeros in "
                             + ", ".join(f"{name} ({count})" for name, count in revived.items()))
        rate = _sparse_rate((recipe.export or ExportSection()).sparse_weights_decompression_rate, int8,
                            ctx.prunable())
        write_runtime_config(out, rate)
    deployed = SparseModel(ctx.run_dir / LAYOUT.ir)
    runtime = deployed.describe()
    (log.info if runtime["sparse_layers_active"] or rate is None else log.warning)(runtime["note"])
    metrics = score(openvino_predictor(deployed), tokenizer, data, next(iter(data.eval)), _eval_batch(recipe),
                    recipe.data.max_seq_length)
    torch_fp32 = ctx.outputs["evaluate"]["torch_fp32"]
    label = "openvino_int8" if section.approach != "none" else "openvino_deployed"
    log.info("%s: %s (torch FP32: %s)", label, metrics, torch_fp32)
    sparsity = sparsity_report(model, ctx.prunable())
    for layer in sparsity["layers"]:
        layer.update({k: v for k, v in int8.get(layer["name"], {}).items() if k != "revived_zeros"})
    accuracy = {label: metrics, "delta": {k: round(metrics[k] - torch_fp32[k], 6) for k in metrics}}
    reference = ctx.outputs["evaluate"].get("dense_reference")
    if reference:
        accuracy["gap"] = _gap(ctx, reference, metrics, label)
    report = {"accuracy": accuracy, "sparsity": sparsity, "runtime": runtime,
              "quantization": {"approach": section.approach, "zeros_revived": 0, "layers_int8": len(int8),
                               "layers_float": sorted(set(float_weights) - set(int8)),
                               "accuracy_criterion": section.accuracy_criterion.model_dump()
                               if section.accuracy_criterion else None}}
    if qat is not None:
        report["quantization"]["training"] = vars(qat)
    write_ir_card(ctx.run_dir / LAYOUT.ir, ctx.report, report, recipe)
    return StageOutput(outputs={"ir_dir": LAYOUT.ir, "sparse_rate": rate}, report=report)


def benchmark(ctx: StageContext) -> StageOutput:
    """Every variant the run produced (torch checkpoint, OpenVINO FP32, default precision, INT8 dense and
    sparse), measured in this one process; figures, ratios and charts under ``benchmark/``."""
    from .bench import benchmark_run_dir, settings_from

    recipe = ctx.recipe
    result = benchmark_run_dir(ctx.run_dir, Path(ctx.model_dir()), recipe.task, settings_from(recipe.benchmark),
                               benchmark_texts(recipe.benchmark.texts, ctx.data))
    return StageOutput(report={"benchmark": result})


def benchmark_texts(source: str | None, data: Any) -> list[str] | None:
    """The real texts a benchmark measures: the evaluation split's (single-text classification), a
    file's, or none. Pairs and questions with contexts are measured at fixed lengths only."""
    from .data.text import read_texts

    if source is None:
        return None
    if source != "evaluation":
        return read_texts(Path(source).expanduser(), "text")
    examples = next(iter(data.eval.values()))
    if not examples or not hasattr(examples[0], "texts") or len(examples[0].texts) != 1:
        log.info("real-text figures: single-text classification only; this task is measured at fixed lengths")
        return None
    return [example.texts[0] for example in examples]


def package(ctx: StageContext) -> StageOutput:
    """The edge bundle in ``package/`` (and ``package.tar.gz`` when asked), verified before it is kept."""
    return package_into(ctx, ctx.run_dir / LAYOUT.package)


def package_into(ctx: StageContext, out: Path) -> StageOutput:
    from .bench import Variant, model_bytes
    from .package import build_bundle

    section, recipe = ctx.recipe.package, ctx.recipe
    dense = model_bytes(Variant("torch_fp32", "torch", Path(ctx.model_dir())))
    report = build_bundle(ctx.run_dir, out, recipe, ctx.data, ctx.report, section.target, section.compress_embeddings,
                          section.max_accuracy_drop, dense, section.archive)
    return StageOutput(outputs={"bundle": report["dir"]}, report={"package": report})


def _max_difference(expected: dict[str, list[Any]], got: dict[str, list[Any]]) -> float:
    """Largest |difference| of any output of any head (``task_outputs`` rows)."""
    return max(float(abs(e - g).max()) for head in expected for e, g in zip(expected[head], got[head], strict=True))


def _quantization_aware_training(ctx: StageContext, tokenizer: Any, calibration: list[dict[str, Any]],
                                 out: Path) -> Any:
    """QAT: NNCF fake-quantizes a copy of the fine-tuned model, it trains with QAT's own budget
    (``quantization.training``, see ``Recipe.qat_training``) with every zero locked (INC pattern_lock on
    the pruned layers), and optimum-intel exports it."""
    from .export import export_trained
    from .modeling import load_model
    from .prune import inc_config
    from .quantize import quantization_aware
    from .recipe import PruningSection
    from .train import fine_tune

    recipe = ctx.recipe
    budget = recipe.qat_training()
    log.info("quantization-aware training: %d calibration samples, then %s at learning rate %g with the zero "
             "masks locked", len(calibration), f"{budget.max_steps} steps" if budget.max_steps > 0 else
             f"{budget.num_train_epochs:g} epochs", budget.learning_rate)
    model = quantization_aware(load_model(ctx.model_dir(), recipe.task), calibration, recipe.quantization)
    pruned = recipe.pruning or PruningSection()
    lock = inc_config(PruningSection(pruning_type="pattern_lock", op_names=pruned.op_names,
                                     excluded_op_names=pruned.excluded_op_names))
    result = fine_tune(model, tokenizer, ctx.data, budget, recipe.data.max_seq_length, lock)
    export_trained(model, out, recipe.task)
    return result


def _validation(data: Any, tokenizer: Any, max_length: int) -> tuple[list[dict[str, Any]], Any]:
    """The primary evaluation split as single-item inputs, and its task metric over their outputs
    (what NNCF's accuracy control evaluates after each layer it reverts)."""
    split = next(iter(data.eval))
    items = data.eval_items(split, tokenizer, max_length)
    inputs = [{k: v.numpy() for k, v in data.collate(tokenizer, [item], max_length).items() if k not in data.targets}
              for item in items]

    def metric(outputs: list[dict[str, Any]]) -> float:
        rows = {head: [output[head][0] for output in outputs] for head in data.heads}
        return data.score(split, items, rows)[data.metric]

    return inputs, metric


def _sparse_rate(setting: str | float, int8: dict[str, dict[str, Any]], prunable: Any) -> float | None:
    """``auto``: the largest rate every pruned, eligible INT8 layer reaches; ``off``: none; a float: as
    given (layers below it run dense, which is said)."""
    from .runtime.model import auto_rate

    pruned = {name: layer["int8_zero_fraction"] for name, layer in int8.items()
              if layer["eligible_for_sparse"] and prunable(name)}
    if setting == "off":
        return None
    if setting == "auto":
        rate = auto_rate(list(pruned.values()))
        if rate is None:
            log.info("sparse weight decompression left off: %s", "no pruned INT8 layer has dims that are multiples "
                     "of 64" if not pruned else f"the sparsest-common rate {min(pruned.values()):.2f} is below 0.5")
        return rate
    below = [name for name, fraction in pruned.items() if fraction < setting]
    if below:
        log.warning("sparse rate %s: %d pruned layers are less sparse and will run dense: %s", setting, len(below),
                    ", ".join(below))
    return float(setting)


def _eval_batch(recipe: Recipe) -> int:
    return recipe.training.per_device_eval_batch_size if recipe.training else 64
