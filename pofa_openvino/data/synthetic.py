"""A small deterministic sentiment set, generated, so the quickstart needs no download."""

from __future__ import annotations

import random

from .example import Example

_SUBJECTS = ["the movie", "this film", "the story", "the acting", "the soundtrack", "the ending",
             "the script", "the cast", "the director's work", "the plot", "the dialogue", "the pacing"]
_POSITIVE = ["wonderful", "moving", "brilliant", "delightful", "gripping", "charming", "superb",
             "funny", "beautiful", "memorable", "clever", "heartfelt"]
_NEGATIVE = ["dull", "boring", "clumsy", "tedious", "awful", "forgettable", "lifeless", "shallow",
             "predictable", "painful", "messy", "bland"]
_INTENSIFIERS = ["", "really ", "truly ", "rather ", "quite ", "simply "]
_TAILS = ["", " from start to finish", " , i thought", " overall", " for most of its length",
          " despite the hype"]
LABELS = ["negative", "positive"]


def sentiment(n_train: int = 800, n_eval: int = 200, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Sentences like 'the plot was not gripping' with label 1 (positive) or 0 (negative).

    Negations flip a clause, and in "A , but B" the second clause decides, so a bag of adjectives
    alone does not solve it."""
    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[Example] = []
    while len(examples) < n_train + n_eval:
        positive = rng.random() < 0.5
        text = _clause(rng, positive)
        if rng.random() < 0.35:
            text = f"{_clause(rng, not positive)} , but {text}"
        if text not in seen:
            seen.add(text)
            examples.append(Example(texts=(f"{text} .",), label=int(positive)))
    return examples[:n_train], examples[n_train:]


def _clause(rng: random.Random, positive: bool) -> str:
    negated = rng.random() < 0.3
    adjective = rng.choice(_POSITIVE if positive != negated else _NEGATIVE)
    verb = "was not" if negated else rng.choice(["was", "is", "felt"])
    return f"{rng.choice(_SUBJECTS)} {verb} {rng.choice(_INTENSIFIERS)}{adjective}{rng.choice(_TAILS)}"
