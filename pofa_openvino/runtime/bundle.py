"""The edge bundle on the receiving side: open it, check it, run it. Imports only openvino,
openvino-tokenizers and numpy (no torch, no transformers): the base install is enough.

A bundle is a directory: ``model/`` (INT8 IR, config, HF tokenizer files), ``tokenizer/`` (the
tokenizer as an OpenVINO model: raw strings in, token ids out), ``runtime_config.json``,
``selftest.json``, ``README.md`` and ``manifest.json`` (what it is, what it needs, and the sha256 and
size of every other file)."""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PofaError
from .digest import sha256_file
from .model import SparseModel
from .tasks import CLASSIFICATION, TASKS, get_task, task_of_architectures

FORMAT, FORMAT_VERSION = "pofa-openvino-bundle", 1
MANIFEST = "manifest.json"
TOKENIZER, DETOKENIZER = "tokenizer/openvino_tokenizer.xml", "tokenizer/openvino_detokenizer.xml"
MANIFEST_KEYS = ("format", "format_version", "name", "task", "labels", "max_sequence_length", "text_inputs",
                 "target", "source", "requires", "figures", "files")
PREDICT_BATCH = 32
SELFTEST_TOLERANCE = 1e-2  # max |output difference| on the stored inputs (INT8 kernels differ across CPUs)


class BundleError(PofaError):
    """The bundle is incomplete, altered or not one this release can run; the message names what."""


def read_json_file(root: Path, name: str, kind: type) -> Any:
    """A bundle's JSON file as ``kind`` (dict or list); anything else is a :class:`BundleError` naming it."""
    try:
        value = json.loads((root / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise BundleError(f"{name}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(value, kind):
        raise BundleError(f"{name}: a JSON {type(value).__name__}, not the {kind.__name__} the format has")
    return value


def names_bundle_format(manifest: str | bytes) -> bool:
    """Whether a manifest's text names this tool's bundle format: the one test of what this tool wrote,
    for a folder and for an archive alike."""
    try:
        return json.loads(manifest).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def is_bundle(folder: Path) -> bool:
    """Whether ``folder`` holds a bundle this tool wrote."""
    try:
        return names_bundle_format((folder / MANIFEST).read_bytes())
    except OSError:
        return False


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, checked for format, version and keys."""
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} is not a bundle: {MANIFEST} is missing")
    manifest = read_json_file(root, MANIFEST, dict)
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: format_version {manifest.get('format_version')!r}; this release reads "
                          f"version {FORMAT_VERSION}: use the pofa-openvino version in its `requires`")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{path}: missing keys {', '.join(missing)}")
    if manifest["task"] not in TASKS:
        raise BundleError(f"{path}: task {manifest['task']!r} is not one this release runs ({', '.join(TASKS)})")
    return manifest


def check_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every listed file present with its size and sha256, and no file that is not listed. One
    problem is named as it is; several at once mean the manifest is another bundle's."""
    listed, problems = manifest["files"], []
    if not isinstance(listed, dict):
        raise BundleError(f"{MANIFEST}: `files` is not a mapping of file names to sizes and sha256")
    for name, expected in listed.items():
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{MANIFEST}: {name!r} lies outside the bundle; refused")
        if not isinstance(expected, dict) or not {"bytes", "sha256"} <= set(expected):
            raise BundleError(f"{MANIFEST}: the entry of {name} has no bytes and sha256")
        if path.is_symlink():
            problems.append(f"{name}: a link, not a file of the bundle")
        elif not path.is_file():
            problems.append(f"{name}: missing from the bundle")
        elif path.stat().st_size != expected["bytes"]:
            problems.append(f"{name}: {path.stat().st_size} bytes, the manifest says {expected['bytes']} "
                            "(truncated or altered)")
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (altered)")
    problems += [f"{name}: not in the manifest (added)" for name in sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST) if name not in listed]
    if len(problems) == 1:
        raise BundleError(problems[0])
    if problems:
        raise BundleError(f"the manifest does not describe this bundle ({manifest['name']}, target "
                          f"{manifest['target']}): {len(problems)} files differ; it belongs to another bundle, or "
                          "the bundle was altered: " + "; ".join(problems))


def check_model_config(root: Path, manifest: dict[str, Any]) -> None:
    """The manifest's task and labels must be the checksummed model config's: reversed labels in the
    manifest would make ``predict`` answer the opposite class."""
    config = read_json_file(root, "model/config.json", dict)
    task = task_of_architectures(config.get("architectures") or []) or CLASSIFICATION
    if task.name != manifest["task"]:
        raise BundleError(f"{MANIFEST}: task {manifest['task']!r}, but model/config.json is "
                          f"{', '.join(config.get('architectures') or ['no architecture'])}")
    if not task.extractive:
        id2label = config.get("id2label") or {}
        labels = [str(id2label.get(str(i), id2label.get(i))) for i in range(len(id2label))] \
            if isinstance(id2label, dict) else []
        if not isinstance(manifest["labels"], list) or labels != [str(label) for label in manifest["labels"]]:
            raise BundleError(f"{MANIFEST}: labels {manifest['labels']} differ from model/config.json's {labels}")


class Bundle:
    """A bundle compiled for the CPU with its runtime config; :meth:`predict` takes raw strings."""

    def __init__(self, path: str | Path, check: bool = True, properties: dict[str, Any] | None = None):
        import openvino as ov
        import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations with OpenVINO)

        self.root = Path(path)
        self.manifest = read_manifest(self.root)
        if check:
            check_files(self.root, self.manifest)
            check_model_config(self.root, self.manifest)
        config = read_json_file(self.root, "runtime_config.json", dict).get("CPU", {})
        if not isinstance(config, dict):
            raise BundleError("runtime_config.json: `CPU` is not a mapping of properties")
        core = ov.Core()
        with _openvino_reads("model/openvino_model.xml"):
            self.model = SparseModel(self.root / "model", {**config, **(properties or {})})
        with _openvino_reads(TOKENIZER):
            tokenizer = core.read_model(self.root / TOKENIZER)
            self.tokenizer = core.compile_model(tokenizer, "CPU")
        self.pad_token_id = int(tokenizer.get_rt_info("pad_token_id").astype(int)) \
            if tokenizer.has_rt_info("pad_token_id") else 0
        with _openvino_reads(DETOKENIZER):
            self.detokenizer = (core.compile_model(self.root / DETOKENIZER, "CPU")
                                if (self.root / DETOKENIZER).is_file() else None)

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def outputs(self, texts: list[str], pairs: list[str] | None = None) -> tuple[dict[str, np.ndarray], Any]:
        """Model outputs by name for a batch of strings (and their second strings), and the token ids."""
        tokens = self.tokens(texts, pairs)
        return self.model.infer(tokens), tokens["input_ids"]

    def tokens(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """The tokenizer's outputs by name for a batch of strings, padded to the longest."""
        inputs = self.text_inputs(len(texts), pairs is not None)
        strings = {0: np.array(texts)} if inputs == 1 else {0: np.array(texts), 1: np.array(pairs)}
        return {out.get_any_name(): value for out, value in self.tokenizer(strings).items()}

    def text_inputs(self, count: int, paired: bool) -> int:
        expected = self.manifest["text_inputs"]
        if paired != (expected == 2):
            what = "a question and a context" if get_task(self.task).extractive else "text pairs"
            raise BundleError(f"this bundle takes {what if expected == 2 else 'single texts'}; got "
                              f"{'pairs' if paired else 'single texts'}")
        if count == 0:
            raise BundleError("no text to predict")
        return expected

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[dict[str, Any]]:
        """Classification: label, score and every label's probability. QA (texts are questions, pairs
        the contexts): the answer span's text, as the tokenizer normalises it, and its score. Texts
        run in batches of :data:`PREDICT_BATCH`, so memory stays bounded however many are given."""
        if len(texts) > PREDICT_BATCH:
            return [result for start in range(0, len(texts), PREDICT_BATCH)
                    for result in self.predict(texts[start:start + PREDICT_BATCH],
                                               pairs[start:start + PREDICT_BATCH] if pairs is not None else None)]
        outputs, ids = self.outputs(texts, pairs)
        if get_task(self.task).extractive:
            return [self.answer(ids[i], outputs["start_logits"][i], outputs["end_logits"][i])
                    for i in range(len(texts))]
        labels, probabilities = self.classify(outputs["logits"])
        return [{"label": label, "score": float(p.max()),
                 "scores": {name: float(v) for name, v in zip(self.manifest["labels"], p, strict=True)}}
                for label, p in zip(labels, probabilities, strict=True)]

    def classify(self, logits: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Each row's label and the probabilities of every label."""
        probabilities = _softmax(logits)
        return [self.manifest["labels"][int(i)] for i in probabilities.argmax(-1)], probabilities

    def answer(self, ids: np.ndarray, start: np.ndarray, end: np.ndarray) -> dict[str, Any]:
        """The best span between the first and second [SEP] (the context), at most ``max_answer_length``
        tokens long."""
        sep = np.flatnonzero(ids == self.manifest["sep_token_id"])
        context = np.arange(sep[0] + 1, sep[1]) if len(sep) > 1 else np.arange(0)
        if not len(context):
            return {"answer": "", "score": float("-inf"), "tokens": None}
        scores = start[context][:, None] + end[context][None, :]
        offsets = context[None, :] - context[:, None]
        scores[(offsets < 0) | (offsets >= self.manifest.get("max_answer_length", 30))] = -np.inf
        first, last = np.unravel_index(int(scores.argmax()), scores.shape)
        span = ids[None, context[first]:context[last] + 1]
        text = next(iter(self.detokenizer({0: span}).values()))[0]
        return {"answer": str(text), "score": float(scores[first, last]),
                "tokens": [int(context[first]), int(context[last])]}


@contextmanager
def _openvino_reads(name: str) -> Iterator[None]:
    """OpenVINO's error on a file it cannot read or compile, as one line naming the bundle file."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip() and "Exception from" not in line), "")
        raise BundleError(f"{name}: OpenVINO cannot load it ({first.strip()[:160] or type(exc).__name__})") from None


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def run_selftest(bundle: Bundle) -> dict[str, Any]:
    """The stored inputs through the bundle; outputs must be finite and match the stored ones within
    :data:`SELFTEST_TOLERANCE`, which the format fixes (a tolerance read from the file it checks would
    let the file pass itself)."""
    selftest = read_json_file(bundle.root, "selftest.json", dict)
    try:
        texts, pairs, stored = selftest["texts"], selftest.get("pairs"), dict(selftest["outputs"])
        names = {output.get_any_name() for output in bundle.model.model.outputs}
        if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)) or set(stored) - names:
            raise ValueError("its texts or output names are not the model's")
        outputs, _ = bundle.outputs(texts, pairs)
        worst = max(float(np.abs(outputs[name] - np.asarray(expected, dtype=np.float64)).max())
                    for name, expected in stored.items())
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"selftest.json: not a self-test of this bundle ({type(exc).__name__}: "
                          f"{str(exc)[:80]})") from None
    if not all(np.isfinite(outputs[name]).all() for name in selftest["outputs"]):
        raise BundleError("self-test failed: the model's outputs are not finite (NaN or infinity)")
    if not worst <= SELFTEST_TOLERANCE:  # a NaN difference fails too
        raise BundleError(f"self-test failed: outputs differ from the stored ones by up to {worst:.3g} "
                          f"(tolerance {SELFTEST_TOLERANCE})")
    return {"samples": len(selftest["texts"]), "max_abs_diff": worst, "tolerance": SELFTEST_TOLERANCE}


def verify(path: str | Path) -> dict[str, Any]:
    """Checksums, manifest, load, self-test, and what the CPU ran; raises :class:`BundleError` naming
    the first problem. An archive is unpacked (safely) into a temporary directory first."""
    root = Path(path)
    if root.is_file():
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pofa-verify-") as unpacked:
            return {**verify(extract(root, unpacked)), "bundle": str(root)}
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory or archive")
    bundle = Bundle(root)
    selftest = run_selftest(bundle)
    return {"bundle": str(root), "name": bundle.manifest["name"], "files": len(bundle.manifest["files"]),
            "selftest": selftest, "runtime": bundle.model.describe()}


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a bundle archive into ``dest`` (new or empty). Members with absolute paths, ``..``,
    links or anything but plain files and directories are refused before anything is written."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BundleError(f"{dest} is not empty; choose an empty directory to unpack into")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, dest, members)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BundleError(f"{archive}: not a readable archive, or cut short ({exc or type(exc).__name__})") from None
    return dest


MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 8 << 30  # a BERT-Large INT8 bundle is well under 1 GB


def _check_members(archive: Path, dest: Path, members: list[tarfile.TarInfo]) -> None:
    """Everything an archive would write, refused from its headers before a byte is written."""
    if len(members) > MAX_MEMBERS:
        raise BundleError(f"{archive}: {len(members):,} members; a bundle has far fewer (at most {MAX_MEMBERS:,})")
    total = sum(member.size for member in members if member.isfile())
    if total > MAX_UNPACKED_BYTES:
        raise BundleError(f"{archive}: would unpack to {total:,} bytes (at most {MAX_UNPACKED_BYTES:,}); refused")
    files: set[str] = set()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or Path(member.name).is_absolute() or ".." in parts:
            raise BundleError(f"{archive}: member {member.name!r} would be written outside {dest}; refused")
        if not (member.isfile() or member.isdir()):
            raise BundleError(f"{archive}: member {member.name!r} is a link or special file; refused")
        clash = next((str(Path(*parts[:i])) for i in range(1, len(parts)) if str(Path(*parts[:i])) in files), None)
        if clash or (member.isfile() and member.name in files):
            raise BundleError(f"{archive}: member {member.name!r} collides with the file {clash or member.name!r}; "
                              "refused")
        if member.isfile():
            files.add(str(Path(member.name)))
