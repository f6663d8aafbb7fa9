"""Tiny generated checkpoints of the supported architectures, for tests and smoke runs.

Hidden and intermediate sizes are multiples of 64 so every Linear layer has the shape OpenVINO's
sparse weight decompression accepts."""

from __future__ import annotations

import string
from pathlib import Path

ARCHITECTURES = ("bert", "distilbert")
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_model(architecture: str, out_dir: str | Path, words: list[str], seed: int = 0) -> Path:
    """Write a 2-layer, hidden-64 encoder (no task head) and a WordPiece tokenizer over ``words``."""
    import torch
    from transformers import AutoModel, BertConfig, BertTokenizer, DistilBertConfig

    if architecture not in ARCHITECTURES:
        raise ValueError(f"{architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    characters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = _SPECIAL + sorted(set(words)) + [f"##{c}" for c in characters] + list(characters + string.punctuation)
    # transformers 5 takes the vocabulary itself (a ``vocab_file`` argument is silently ignored).
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(dict.fromkeys(vocab))}, do_lower_case=True)
    size = dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=512)
    if architecture == "bert":
        config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                            **size)
    else:
        config = DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=128, **size)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
