"""Shared fixtures: tiny generated checkpoints and a helper that writes recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Property-based tests: a bounded number of cases in `make test`, many more in `make fuzz`.
settings.register_profile("default", max_examples=60)
settings.register_profile("fuzz", max_examples=3000)
settings.load_profile("default")


@pytest.fixture(scope="session")
def sentiment_words() -> list[str]:
    from pofa_openvino.data.synthetic import sentiment

    train, evaluation = sentiment()
    return sorted({w for e in train + evaluation for w in re.findall(r"[\w']+|[^\w\s]", e.texts[0])})


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, sentiment_words) -> Path:
    from pofa_openvino.tiny import make_tiny_model

    return make_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert"), sentiment_words)


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory, sentiment_words) -> Path:
    from pofa_openvino.tiny import make_tiny_model

    return make_tiny_model("distilbert", tmp_path_factory.mktemp("tiny-distilbert"), sentiment_words)


@pytest.fixture(scope="session")
def packaged(tiny_bert, tmp_path_factory):
    """A finished tiny run (90% sparse, static INT8, rate 0.8) with its bundle and archive, built once for
    the package-stage tests and the bundle's (tests/runtime/test_bundle.py)."""
    from pofa_openvino import run

    tmp = tmp_path_factory.mktemp("package")
    recipe = tiny_recipe(sparsify(tiny_bert, tmp / "sparse", fraction=0.9), pruning={"pruning_type": "pattern_lock"},
                         quantization={"approach": "static", "calibration_sampling_size": 16},
                         export={"sparse_weights_decompression_rate": 0.8}, package={"archive": True})
    return run(recipe, output_dir=tmp / "run")


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI, called in-process, points the root logger at the stream of that moment (a captured
    one that pytest closes afterwards); give later tests their logging back."""
    import logging

    root, ours = logging.getLogger(), logging.getLogger("pofa_openvino")
    handlers, level, our_level = root.handlers[:], root.level, ours.level
    yield
    root.handlers[:], root.level = handlers, level
    ours.setLevel(our_level)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared SST-2/SQuAD data at {SHARED_DATA} (absent in a user's clone)")
    return SHARED_DATA


def clean_venv(where: Path, extras: str = "") -> Path:
    """A new venv with only ``pip install pofa-openvino[extras]`` (pinned by constraints.txt): what a
    user of the runtime installs. Returns its bin directory."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    # Built from a copy of what the wheel is made of: an in-tree build would reuse a stale build/lib of
    # modules that have since moved or gone, and ship them.
    source = where.with_name(where.name + "-source")
    shutil.copytree(root / "pofa_openvino", source / "pofa_openvino", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    install = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", "-c", str(root / "constraints.txt"),
                              f"{source}[{extras}]" if extras else str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    return where / "bin"


def tiny_recipe(model_dir: Path, **sections) -> dict:
    """A fast recipe on the built-in sentiment set; keyword arguments replace whole sections."""
    recipe = {
        "name": "tiny",
        "model": {"name_or_path": str(model_dir)},
        "data": {"dataset": "builtin:sentiment", "max_seq_length": 32, "max_train_samples": 256,
                 "max_eval_samples": 64},
        "training": {"max_steps": 8, "per_device_train_batch_size": 16, "learning_rate": 1e-3,
                     "logging_steps": 4},
    }
    recipe.update(sections)
    return {k: v for k, v in recipe.items() if v is not None}


def sparsify(model_dir: Path, out_dir: Path, fraction: float = 0.9, seed: int = 0) -> Path:
    """A copy of a tiny checkpoint whose encoder Linear weights are ``fraction`` zeros at random
    (what a PruneOFA unstructured checkpoint looks like), tokenizer included."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and "pooler" not in name:
                module.weight[torch.rand(module.weight.shape, generator=generator) < fraction] = 0.0
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return out_dir


def linear_weights(model_dir: Path, task: str = "text-classification") -> dict:
    """Every Linear weight of a saved task checkpoint, by module name."""
    from pofa_openvino.modeling import load_model
    from pofa_openvino.prune import linear_weights as weights

    return {name: w.detach().clone() for name, w in weights(load_model(str(model_dir), task)).items()}
