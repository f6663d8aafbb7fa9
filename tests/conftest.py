"""Shared fixtures: tiny generated checkpoints and a helper that writes recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared SST-2/SQuAD data at {SHARED_DATA} (absent in a user's clone)")
    return SHARED_DATA


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
