"""The model card: ``README.md`` with Hugging Face metadata in the deployable IR (``openvino/``) and in
the bundle, so either can be pushed to the Hub as it is and found there (base model, task, tags,
datasets, the measured metrics in ``model-index``), and a reader sees what was measured: sparsity
counted from the tensors, the runtime config and whether this CPU ran sparse kernels, accuracy
against the dense reference, speed, and how to run it.

Every figure comes from ``report.json`` through :mod:`pofa_openvino.report`'s rows, so the card, the
report and the CLI never disagree. Toolkit side only: the runtime (bundle, predict, verify) reads the
card as a checksummed file and never imports ``huggingface_hub``."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import report as rows
from .rundir import write_text
from .runtime.tasks import QUESTION_ANSWERING, get_task

log = logging.getLogger(__name__)

CARD = "README.md"
LIBRARY = "openvino"  # what OpenVINO IR repositories on the Hub declare as library_name
# offline:<name> models (registry.OFFLINE_MODELS) are copies of these Hub models.
OFFLINE_SOURCES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
DENSE = 0.05  # below this measured sparsity the model is not tagged sparse (as the pipeline's dense test)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def write_card(directory: Path, report: dict[str, Any], recipe: Any, runtime_config: dict[str, Any],
               bundle: dict[str, Any] | None = None) -> Path:
    """Write ``directory/README.md``: the card of the IR directory, or of the bundle when ``bundle`` (its
    manifest) is given. Only called on directories this tool is writing."""
    path = directory / CARD
    write_text(path, model_card(report, recipe, runtime_config, bundle))
    return path


def write_ir_card(ir_dir: Path, report: dict[str, Any], sections: dict[str, Any], recipe: Any) -> Path:
    """The quantize stage's card in ``openvino/``: the report so far with the stage's own sections (the
    benchmark has not run yet: the bundle's card carries its figures)."""
    from .runtime.model import read_runtime_config

    return write_card(ir_dir, rows.merged(report, sections), recipe, read_runtime_config(ir_dir))


def model_card(report: dict[str, Any], recipe: Any, runtime_config: dict[str, Any],
               bundle: dict[str, Any] | None = None) -> str:
    """The card's text: YAML front matter from :func:`card_data`, then the body."""
    body = _scrub("\n".join(_body(report, recipe, runtime_config, bundle)), _local_paths(report, recipe))
    card = ModelCard(f"---\n{card_data(report, recipe).to_yaml()}\n---\n\n{body}\n")
    return str(card)


def card_data(report: dict[str, Any], recipe: Any) -> ModelCardData:
    """The Hub's metadata: base model and relation, library, pipeline tag, tags, datasets, license and
    language of the base model when its card is on this machine, and the deployed model's metrics."""
    base = base_model_id(recipe.model.name_or_path)
    known = _base_card(recipe.model.name_or_path, base)
    dataset = hub_dataset(recipe)
    return ModelCardData(
        base_model=base, base_model_relation=_relation(report) if base else None, library_name=LIBRARY,
        pipeline_tag=recipe.task, tags=_tags(report, recipe), datasets=[dataset[0]] if dataset else None,
        license=getattr(known, "license", None), language=getattr(known, "language", None),
        model_name=recipe.name, eval_results=_eval_results(report, recipe) or None)


def base_model_id(reference: str) -> str | None:
    """The Hub id a recipe's model names: an ``offline:`` model's source, a hub id as given, or None for a
    local directory (the Hub only links ids)."""
    if reference.startswith("offline:"):
        return OFFLINE_SOURCES.get(reference.removeprefix("offline:"))
    if reference.startswith((".", "/", "~")) or Path(reference).expanduser().exists():
        return None
    return reference if _HUB_ID.match(reference) else None


def hub_dataset(recipe: Any) -> tuple[str, str | None] | None:
    """The Hub dataset id and config the run's data came from (``glue/sst2`` -> ``nyu-mll/glue``,
    ``sst2``); None for built-in sets and local files."""
    dataset = recipe.data.dataset if recipe.data is not None else None
    if dataset is None or dataset.startswith("builtin:") or Path(dataset).expanduser().exists():
        return None
    if recipe.task == QUESTION_ANSWERING.name:
        return ("rajpurkar/squad" if dataset == "squad" else dataset), None
    *repo, config = dataset.split("/")
    name = "/".join(repo)
    return ("nyu-mll/glue" if name in ("", "glue") else name), config


def _relation(report: dict[str, Any]) -> str:
    """``quantized`` when the run changed the base model's weights only by INT8 quantization; a run that
    trained them (fine-tuning, pruning) made a ``finetune`` (the Hub lists each in its own tree)."""
    return "finetune" if report.get("training") or report.get("pretrain") else "quantized"


def _tags(report: dict[str, Any], recipe: Any) -> list[str]:
    from .registry import MODELS

    approach = (report.get("quantization") or {}).get("approach", "none")
    sparsity = (report.get("sparsity") or {}).get("overall") or 0.0
    tags = ["openvino", "pofa-openvino"]
    if approach != "none":
        tags += ["nncf", "int8" if approach in ("static", "qat") else "int8-weights"]
    tags += ["sparse"] if sparsity >= DENSE else []
    tags += ["structured-pruning"] if report.get("structure") else []
    tags += ["neural-compressor"] if recipe.pruning is not None or recipe.pretrain is not None else []
    tags += ["pruneofa"] if recipe.model.name_or_path in MODELS or recipe.pretrain is not None else []
    return tags


def _eval_results(report: dict[str, Any], recipe: Any) -> list[EvalResult]:
    """The deployed model's metrics (the bundle's own when its embeddings were compressed and measured,
    else INT8, else the IR as exported), as ``model-index`` entries."""
    accuracy = report.get("accuracy") or {}
    runner = next((key for key in ("bundle", "openvino_int8", "openvino_deployed") if key in accuracy), None)
    if runner is None:
        return []
    hub = hub_dataset(recipe)
    kind, config = hub or (recipe.data.dataset or "local", None)
    return [EvalResult(task_type=recipe.task, dataset_type=kind, dataset_name=_dataset_title(recipe),
                       dataset_config=config, dataset_split=accuracy.get("split"), metric_type=metric,
                       metric_value=value, metric_name=f"{metric} ({rows.RUNNERS[runner]})")
            for metric, value in accuracy[runner].items()]


def _dataset_title(recipe: Any) -> str:
    from .registry import task_column

    data = recipe.data
    column = task_column(data.dataset, recipe.task)
    if column is not None:
        return column.title
    if data.dataset == "builtin:sentiment":
        return "built-in sentiment set (generated)"
    files = [Path(f).name for f in (data.train_file, data.validation_file) if f]
    return data.dataset or ", ".join(files) or "local files"


def _base_card(reference: str, hub_id: str | None) -> ModelCardData | None:
    """The base model's own card metadata when it is on this machine (a local or offline directory, or
    the Hugging Face cache): where the license comes from. Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    from .errors import PofaError
    from .registry import resolve_model

    try:
        local = Path(resolve_model(reference)).expanduser() / CARD
    except PofaError:
        return None
    found = local if local.is_file() else try_to_load_from_cache(hub_id, CARD) if hub_id else None
    if not isinstance(found, (str, Path)):
        return None
    try:
        return ModelCard.load(found).data
    except Exception as exc:  # noqa: BLE001  (a base card we cannot read only costs the license line)
        log.debug("base model card %s unreadable: %s", found, exc)
        return None


def _body(report: dict[str, Any], recipe: Any, runtime_config: dict[str, Any],
          bundle: dict[str, Any] | None) -> list[str]:
    lines = [f"# {recipe.name}", "", _what(report, recipe, bundle), ""]
    lines += ["## Sparsity (counted from the weights)", ""]
    lines += rows.table(rows.sparsity_rows(report) + rows.structure_rows(report) + rows.quantization_rows(report))
    if (report.get("sparsity") or {}).get("layers"):
        lines += ["", "<details><summary>Per layer</summary>", "", *rows.layer_sparsity(report["sparsity"]), "",
                  "</details>"]
    lines += ["", "## Runtime configuration", "", *_runtime(report, runtime_config, bundle)]
    lines += ["", "## Accuracy", "", *_accuracy(report)]
    lines += ["", "## Speed", "", *_speed(report)]
    lines += ["", "## How to run", "", *(_run_bundle(bundle) if bundle else _run_ir())]
    return lines


def _what(report: dict[str, Any], recipe: Any, bundle: dict[str, Any] | None) -> str:
    """One paragraph: what the model is, where it comes from, what was done to it."""
    from importlib.metadata import version

    base = base_model_id(recipe.model.name_or_path)
    source = (f"[{base}](https://huggingface.co/{base})" if base
              else f"the local checkpoint `{recipe.model.name_or_path}`")
    model = report.get("model") or {}
    kind = f"{model['architecture']} model ({model['parameters'] / 1e6:.1f}M parameters)" if model else "model"
    steps = []
    if report.get("pretrain"):
        steps.append("pruned once on unlabelled text (PruneOFA)")
    if report.get("training"):
        steps.append(f"fine-tuned on {_dataset_title(recipe)}")
    pruning = recipe.pruning
    if pruning is not None and pruning.pruning_type == "pattern_lock":
        steps.append("its zeros locked by Intel Neural Compressor (pattern_lock) while it trained")
    elif pruning is not None:
        steps.append(f"pruned by Intel Neural Compressor ({pruning.pruning_type}, {pruning.pattern}, target "
                     f"{pruning.target_sparsity:.0%})")
    approach = (report.get("quantization") or {}).get("approach", "none")
    steps.append("exported to OpenVINO IR" + (f" and quantized to INT8 by NNCF ({approach})" if approach != "none"
                                              else " (not quantized)"))
    what = "An edge bundle of" if bundle else "The OpenVINO IR of"
    labels = model.get("labels") or (bundle or {}).get("labels")
    task = get_task(recipe.task).title + (f" (labels: {', '.join(labels)})" if labels else "")
    recipe_line = report.get("recipe", {})
    return (f"{what} a {kind} for {task}, built from {source}: {', '.join(steps)}, by pofa-openvino "
            f"{version('pofa-openvino')} from the recipe "
            f"`{recipe_line.get('name', recipe.name)}` (sha256 `{str(recipe_line.get('sha256', ''))[:12]}`). Every "
            "figure below was measured in that run (`report.json`).")


def _runtime(report: dict[str, Any], runtime_config: dict[str, Any], bundle: dict[str, Any] | None) -> list[str]:
    from .runtime.model import RUNTIME_CONFIG, SPARSE_RATE

    rate = runtime_config.get("CPU", {}).get(SPARSE_RATE)
    target = f" for the target `{bundle['target']}`" if bundle else ""
    lines = [f"`{RUNTIME_CONFIG}`{target}: CPU properties applied when the model is compiled (OpenVINO does not "
             "read them from the IR; every loader of this tool applies them):", "", "```json",
             json.dumps(runtime_config, indent=2), "```", ""]
    if rate is not None:
        lines.append(f"Sparse weight decompression at rate {rate}: FullyConnected layers with INT8 weights whose zero "
                     "fraction is at least the rate run sparse kernels on CPUs with AMX (4th-generation Xeon and "
                     "newer); on other CPUs the same model runs dense INT8 kernels.")
    else:
        lines.append(f"Sparse weight decompression is off{target}: the model runs dense kernels.")
    measured = rows.runtime_rows(report)
    if measured:
        lines += ["", "Measured on the machine that built it (the kernels OpenVINO executed):", "",
                  *rows.table(measured)]
    if bundle:
        lines += ["", "`pofa-openvino verify .` reports what your CPU runs."]
    return lines


def _accuracy(report: dict[str, Any]) -> list[str]:
    measured = rows.gap_rows(report) + rows.accuracy_rows(report)
    if not measured:
        return ["Not evaluated in this run."]
    accuracy = report["accuracy"]
    note = [] if accuracy.get("dense_reference") else [
        "", "No dense reference was measured in this run (a pruning run measures one: its teacher, or the "
            "loaded dense model), so there is no gap to report."]
    return ["Scores are fractions (1.0 = 100%).", "", *rows.table(measured), *note]


def _speed(report: dict[str, Any]) -> list[str]:
    bench = report.get("benchmark")
    if not bench:
        return ["Not measured when this card was written. The benchmark stage, when the recipe has one, runs after "
                "quantization and records its figures in the run's `report.md` and in the bundle's card; "
                "`pofa-openvino bench DIR` measures any IR directory."]
    figures = rows.benchmark_markdown({**bench, "charts": {}})[2:]  # without its heading and the run's chart files
    return [*rows.table(rows.speed_rows(report)), "", *figures]


def _run_ir() -> list[str]:
    return ["```python",
            "from pofa_openvino.runtime import SparseModel   # applies runtime_config.json",
            "",
            'model = SparseModel(".")',
            "print(model.describe())   # the CPU, the sparse rate and the kernels it executed",
            "```", "",
            "With optimum-intel: `OVModelForSequenceClassification.from_pretrained(\".\", ov_config=json.load("
            "open(\"runtime_config.json\"))[\"CPU\"])` (`OVModelForQuestionAnswering` for QA). With `benchmark_app`: "
            "`benchmark_app -m openvino_model.xml -load_config runtime_config.json`.", "",
            "`pofa-openvino package RUN_DIR` turns the run into a verified bundle that runs with OpenVINO alone "
            "(`predict`, `verify`, `serve`)."]


def _run_bundle(manifest: dict[str, Any]) -> list[str]:
    pair = manifest["text_inputs"] == 2
    extractive = get_task(manifest["task"]).extractive
    example = ('"Who wrote it?" --pair "It was written by Ann."' if extractive
               else '"first text" --pair "second text"' if pair else '"a sentence to classify"')
    texts = ('["Who wrote it?"], ["It was written by Ann."]' if extractive
             else '["first text"], ["second text"]' if pair else '["a sentence to classify"]')
    requirement = manifest["requires"]["pofa-openvino"]
    return [f"Runs with OpenVINO alone: `pip install pofa-openvino{requirement}` (openvino, openvino-tokenizers and "
            "numpy; no torch). Exact runtime versions are in `manifest.json` (`requires`).", "",
            "```bash",
            "pofa-openvino verify .      # checksums (this card included), self-test, and the kernels this CPU runs",
            f"pofa-openvino predict . {example}",
            "pofa-openvino serve .       # the Open Inference Protocol (KServe v2) over HTTP; needs the `serve` extra",
            "```", "",
            "```python",
            "from pofa_openvino.bundle import Bundle   # openvino, openvino-tokenizers and numpy only",
            "",
            f'print(Bundle(".").predict({texts}))',
            "```", "",
            "Files:", "",
            "- `model/`: the INT8 OpenVINO IR with `config.json` and the Hugging Face tokenizer files (loadable by "
            "`optimum.intel.OVModelFor*` with `ov_config` from `runtime_config.json`).",
            "- `tokenizer/`: the tokenizer as an OpenVINO model (strings in, token ids out; needs "
            "openvino-tokenizers).",
            "- `runtime_config.json`: CPU properties (`benchmark_app -load_config runtime_config.json`).",
            "- `selftest.json`: stored inputs and outputs that `verify` checks.",
            "- `manifest.json`: name, task, labels, source recipe, library versions, figures from the run, and the "
            "sha256 and size of every file."]


def _local_paths(report: dict[str, Any], recipe: Any) -> list[str]:
    """This machine's paths a card could quote (the model, a teacher, data files), longest first."""
    candidates = [recipe.model.name_or_path, (report.get("model") or {}).get("path")]
    if recipe.distillation is not None:
        candidates.append(recipe.distillation.teacher)
    if recipe.data is not None:
        candidates += [recipe.data.train_file, recipe.data.validation_file]
    local = {c for c in candidates if c and c.startswith(("/", "~", "."))}
    return sorted(local, key=len, reverse=True)


def _scrub(text: str, paths: list[str]) -> str:
    """A card leaves the machine: each local path it quotes becomes its last name."""
    for path in paths:
        text = text.replace(path, Path(path).name or path)
    return text
