"""Random mutations of the shipped recipes (values of every type, deleted and unknown keys, YAML
structure, raw bytes) never give anything but a recipe or one line naming the file: no traceback, no
hang. ``make test`` runs a bounded number of cases; ``make fuzz`` runs many more."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pofa_openvino.errors import PofaError
from pofa_openvino.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted([*ROOT.glob("recipes/*.yaml"), *ROOT.glob("benchmarks/recipes/*.yaml")])
TEXTS = {path.name: path.read_text() for path in RECIPES}

VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _paths(data, prefix=()):
    """Every key path of a parsed recipe (mappings only)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()


def _check(text: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name  # the recipe's own folder name decides where its relative paths point
        path.write_bytes(text)
        try:
            recipe = load_recipe(path)
        except PofaError as error:
            message = str(error)
            assert "\n" not in message and message.startswith(str(path)), message
            return
    # What loads passes its own re-validation unchanged: a change made in Python is checked by the same rules.
    assert recipe.model_copy(update={name: getattr(recipe, name) for name in recipe.model_fields_set}) == recipe


@settings(deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_a_changed_value_or_key_is_a_recipe_or_one_line(name, data):
    recipe = yaml.safe_load(TEXTS[name])
    path = data.draw(st.sampled_from(list(_paths(recipe))))
    change = data.draw(st.one_of(VALUES, st.just(_DELETE)))
    _set(recipe, path, change)
    if data.draw(st.booleans()):
        recipe[data.draw(st.text(min_size=1, max_size=8))] = data.draw(VALUES)
    _check(yaml.safe_dump(recipe, allow_unicode=True).encode(), name)


@settings(deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_changed_bytes_are_a_recipe_or_one_line(name, data):
    raw = bytearray(TEXTS[name].encode())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw)))
        what = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = data.draw(st.sampled_from([b":", b"-", b"[", b"{", b"&a", b"*a", b"!!python/object", b"\t", b"\n  ",
                                           b"'", b'"', b"\x00", b"\xff", b"#", b"<<: *a", b"~", b"?"]))
        if what == "insert":
            raw[at:at] = piece
        elif what == "delete":
            del raw[at:at + len(piece)]
        else:
            raw[at:at + len(piece)] = piece
    _check(bytes(raw), name)
