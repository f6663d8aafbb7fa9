"""Build the edge bundle from a finished run: the INT8 IR, its tokenizer as an OpenVINO model, the
runtime config for the target, a self-test, the model card (README.md) and a manifest with a checksum
per file (the card's included). The bundle is verified with :mod:`pofa_openvino.runtime.bundle` (what the
receiving side runs) before it is kept."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from .errors import PofaError, StageError
from .model_card import CARD, write_card
from .provenance import RUNTIME_LIBRARIES, versions
from .rundir import LAYOUT, staged_dir
from .runtime.bundle import (
    DETOKENIZER,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SELFTEST_TOLERANCE,
    TOKENIZER,
    Bundle,
    is_bundle,
    names_bundle_format,
    read_json_file,
    verify,
)
from .runtime.digest import sha256_file
from .runtime.model import IR_FILE, RUNTIME_CONFIG, SPARSE_RATE, read_runtime_config
from .runtime.overwrite import ELSEWHERE, OutputKind
from .runtime.tasks import get_task

log = logging.getLogger(__name__)

SELFTEST_SAMPLES = 4
TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")
# What each target's runtime config asks of the CPU plugin (benchmark_app -load_config shape).
TARGET_HINTS = {"xeon-amx": {"PERFORMANCE_HINT": "THROUGHPUT"}, "xeon": {"PERFORMANCE_HINT": "THROUGHPUT"},
                "edge": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}}


def _bundle_record(folder: Path) -> list[str] | None:
    """A bundle's top-level entries, as its manifest lists them; None for anything but a bundle."""
    if not is_bundle(folder):
        return None
    files = read_json_file(folder, MANIFEST, dict).get("files")
    return sorted({MANIFEST, *(Path(name).parts[0] for name in files if Path(name).parts)}) \
        if isinstance(files, dict) else [MANIFEST]


BUNDLE_OUTPUT = OutputKind("a bundle", _bundle_record, sole=True)  # verify refuses a file the manifest lacks


def build_bundle(run_dir: Path, out: Path, recipe: Any, data: Any, run_report: dict[str, Any], target: str,
                 compress_embeddings: bool, max_accuracy_drop: float, dense_fp32_bytes: int,
                 archive: bool) -> dict[str, Any]:
    """Write the bundle into ``out`` (replaced only when complete and verified); return ``package``."""
    ir_dir = run_dir / LAYOUT.ir
    if not (ir_dir / IR_FILE).is_file():
        raise StageError(f"{run_dir} has no openvino/ IR: packaging needs the quantize stage (add a "
                         "`quantization` or `export` section)")
    with staged_dir(out) as tmp:
        embeddings = _model(ir_dir, tmp / "model", compress_embeddings)
        tokenizer = _tokenizer(ir_dir, tmp / "tokenizer", recipe, data)
        config = {"CPU": {**TARGET_HINTS[target], **_sparse_rate(ir_dir, target)}}
        (tmp / RUNTIME_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        manifest = _manifest(recipe, run_report, target, data, tokenizer)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # provisional: the self-test reads it
        if embeddings["compressed"]:
            embeddings.update(_accuracy_change(ir_dir, tmp / "model", recipe, data, max_accuracy_drop))
        _selftest(tmp, data)
        write_card(tmp, _with_bundle_accuracy(run_report, embeddings), recipe, config, manifest)
        manifest["files"] = {str(p.relative_to(tmp)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                             for p in sorted(tmp.rglob("*")) if p.is_file() and p.name != MANIFEST}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _nothing_private(tmp, run_dir)
        verified = verify(tmp)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    report = {"dir": out.name if out.parent == run_dir else str(out), "target": target, "files": verified["files"],
              "bytes": size, "dense_fp32_bytes": dense_fp32_bytes, "embeddings": embeddings,
              "selftest": verified["selftest"], "archive_bytes": None}
    if archive:
        report["archive"] = str(write_archive(out).name)
        report["archive_bytes"] = (out.parent / report["archive"]).stat().st_size
    report["ratio"] = (report["archive_bytes"] or size) / dense_fp32_bytes if dense_fp32_bytes else None
    archived = f", archive {report['archive_bytes'] / 1e6:.1f} MB" if archive else ""
    log.info("bundle %s: %.1f MB%s, %.1f%% of the dense FP32 checkpoint; verified (%d files, self-test max "
             "difference %.2g)", out, size / 1e6, archived, 100 * (report["ratio"] or 0), verified["files"],
             verified["selftest"]["max_abs_diff"])
    return report


def _model(ir_dir: Path, out: Path, compress: bool) -> dict[str, Any]:
    """The INT8 IR (embeddings compressed when asked), config.json and the HF tokenizer files."""
    from .quantize import compress_embeddings

    out.mkdir()
    before = (ir_dir / "openvino_model.bin").stat().st_size
    compressed = compress and compress_embeddings(ir_dir / IR_FILE, out / IR_FILE)
    if not compressed:
        for name in ("openvino_model.xml", "openvino_model.bin"):
            shutil.copy2(ir_dir / name, out / name)
    for item in ir_dir.iterdir():
        if item.is_file() and not item.name.startswith("openvino_model.") and item.name not in (RUNTIME_CONFIG, CARD):
            shutil.copy2(item, out / item.name)
    config = json.loads((out / "config.json").read_text())
    config.pop("_name_or_path", None)  # the build machine's path
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"requested": compress, "compressed": bool(compressed), "bin_bytes_before": before,
            "bin_bytes_after": (out / "openvino_model.bin").stat().st_size}


def _tokenizer(ir_dir: Path, out: Path, recipe: Any, data: Any) -> dict[str, Any]:
    """The HF tokenizer converted by openvino-tokenizers: one string input per text column (two for
    pairs and QA), truncation at the recipe's max_seq_length; for QA also the detokenizer."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    hf, task = AutoTokenizer.from_pretrained(ir_dir), get_task(recipe.task)
    inputs = task.text_inputs(len(recipe.data.text_columns or [None]))
    converted = convert_tokenizer(hf, number_of_inputs=inputs, max_length=recipe.data.max_seq_length,
                                  truncation=True, with_detokenizer=task.extractive)
    out.mkdir()
    models = converted if isinstance(converted, tuple) else (converted,)
    for model, name in zip(models, (TOKENIZER, DETOKENIZER), strict=False):
        ov.save_model(model, out.parent / name)
    return {"text_inputs": inputs, "sep_token_id": hf.sep_token_id}


def _sparse_rate(ir_dir: Path, target: str) -> dict[str, str]:
    """``xeon-amx`` keeps the run's sparse rate; the other targets leave sparse decompression off."""
    rate = read_runtime_config(ir_dir).get("CPU", {}).get(SPARSE_RATE)
    return {SPARSE_RATE: rate} if target == "xeon-amx" and rate is not None and float(rate) < 1.0 else {}


def _manifest(recipe: Any, report: dict[str, Any], target: str, data: Any, tokenizer: dict[str, Any]) -> dict:
    accuracy = report.get("accuracy", {})
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": recipe.name, "task": recipe.task,
            "labels": data.labels, "max_sequence_length": recipe.data.max_seq_length,
            "max_answer_length": recipe.data.max_answer_length, **tokenizer, "target": target,
            "source": {"recipe": recipe.name, "recipe_sha256": report["recipe"]["sha256"]},
            "requires": {name: f"=={version}" for name, version in versions(RUNTIME_LIBRARIES).items()},
            "figures": {"sparsity": report.get("sparsity", {}).get("overall"),
                        "sparse_rate": report.get("runtime", {}).get("sparse_rate"),
                        "accuracy": {k: accuracy[k] for k in ("torch_fp32", "openvino_int8") if k in accuracy},
                        "metric": accuracy.get("metric")},
            "files": {}}


def _selftest(root: Path, data: Any) -> None:
    """The first evaluation examples and the bundle's own outputs for them."""
    examples = next(iter(data.eval.values()))[:SELFTEST_SAMPLES]
    if hasattr(examples[0], "question"):
        texts, pairs = [e.question for e in examples], [e.context for e in examples]
    else:
        texts = [e.texts[0] for e in examples]
        pairs = [e.texts[1] for e in examples] if len(examples[0].texts) > 1 else None
    outputs, _ = Bundle(root, check=False).outputs(texts, pairs)
    selftest = {"texts": texts, "pairs": pairs, "tolerance": SELFTEST_TOLERANCE,
                "outputs": {name: value.tolist() for name, value in outputs.items()}}
    (root / "selftest.json").write_text(json.dumps(selftest, indent=2) + "\n")


def _with_bundle_accuracy(report: dict[str, Any], embeddings: dict[str, Any]) -> dict[str, Any]:
    """The report the bundle's card is built from: with the metric measured on the bundle's own model
    when its embeddings were compressed (the card states what ships, not the IR before compression)."""
    metric = (report.get("accuracy") or {}).get("metric")
    if not embeddings["compressed"] or metric not in embeddings:
        return report
    return {**report, "accuracy": {**report["accuracy"], "bundle": {metric: embeddings[metric]}}}


def _accuracy_change(ir_dir: Path, model_dir: Path, recipe: Any, data: Any, max_drop: float) -> dict[str, Any]:
    """The task metric with and without the compressed embeddings; refused beyond ``max_drop``."""
    from .evaluate import openvino_predictor, score
    from .modeling import load_tokenizer
    from .runtime.model import SparseModel

    tokenizer, split = load_tokenizer(str(ir_dir)), next(iter(data.eval))
    scores = [score(openvino_predictor(SparseModel(d)), tokenizer, data, split, 64, recipe.data.max_seq_length)
              [data.metric] for d in (ir_dir, model_dir)]
    change = scores[1] - scores[0]
    if change < -max_drop:
        raise StageError(f"INT8 embeddings cost {-change:.4f} {data.metric} (from {scores[0]:.4f}), more than "
                         f"package.max_accuracy_drop {max_drop}; set package.compress_embeddings: false")
    log.info("INT8 embeddings: %s %.4f -> %.4f", data.metric, scores[0], scores[1])
    return {data.metric: scores[1], "change": change}


def _nothing_private(root: Path, run_dir: Path) -> None:
    """No text file of the bundle may carry this machine's paths (run directory, home, working
    directory) or an access token (Hugging Face ``hf_...``)."""
    needles = {str(run_dir.resolve()), str(Path.home()), os.getcwd()} - {"/"}
    for path in root.rglob("*"):
        if path.suffix in (".json", ".md", ".txt", ".xml"):
            text = path.read_text(encoding="utf-8", errors="replace")
            found = [needle for needle in needles if needle in text] + TOKEN.findall(text)
            if found:
                raise StageError(f"{path.relative_to(root)} would carry {found[0][:12]}... out of this machine; "
                                 "the bundle was not written")


def archive_path(bundle_dir: Path) -> Path:
    """Where ``--archive`` writes: ``<bundle>.tar.gz`` beside the bundle directory."""
    return bundle_dir.with_name(bundle_dir.name + ".tar.gz")


def check_archive(bundle_dir: Path, force: bool) -> None:
    """The overwrite policy for the archive beside a bundle written outside a run (a run's own
    ``package.tar.gz`` is one of its entries): an earlier bundle archive of this tool is replaced only
    with ``force``, and any other file of that name is refused. Changes nothing."""
    target = archive_path(bundle_dir)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not _is_bundle_archive(target):
        raise PofaError(f"{target} exists and is not a bundle archive of this tool; {ELSEWHERE}")
    if not force:
        raise PofaError(f"{target} holds a bundle archive; {ELSEWHERE} or pass --force to replace it")


def _is_bundle_archive(path: Path) -> bool:
    """Whether ``path`` is a tar archive whose manifest names this tool's bundle format."""
    try:
        with tarfile.open(path, "r:*") as tar:
            member = tar.extractfile(MANIFEST)
            return member is not None and names_bundle_format(member.read())
    except (OSError, KeyError, tarfile.TarError, EOFError):
        return False


def write_archive(bundle_dir: Path) -> Path:
    """``<bundle>.tar.gz`` beside the directory, members relative to it (written whole, then renamed)."""
    target = archive_path(bundle_dir)
    partial = target.with_name(f".{target.name}.partial")
    with tarfile.open(partial, "w:gz", compresslevel=9) as tar:
        for path in sorted(bundle_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(bundle_dir)), recursive=False)
    os.replace(partial, target)
    return target
