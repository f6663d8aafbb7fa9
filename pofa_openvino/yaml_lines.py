"""Safe YAML parsing that remembers the line of every key, so errors can point at it."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import RecipeError

LineMap = dict[str, int]


class RecipeLoader(yaml.SafeLoader):
    """The safe loader without YAML 1.1's base-60 numbers and timestamps, so ``pattern: 2:4`` stays the
    string '2:4' and ``off`` the string 'off' (not False), and with ``1e-4`` a float: YAML 1.2 rules."""


_REPLACED = {"bool", "int", "float", "timestamp"}
RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag.rsplit(":", 1)[1] not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern in (("bool", r"^(?:true|True|TRUE|false|False|FALSE)$"),
                       ("int", r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
                       ("float", r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                                 r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")):
    RecipeLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list("-+0123456789.tTfF"))


def load_value(text: str) -> Any:
    """One YAML scalar or collection, as a ``--set`` value."""
    return yaml.load(text, Loader=RecipeLoader)


def dotted(path: tuple[Any, ...]) -> str:
    """``("pruning", "pruning_configs", 0, "pattern")`` -> ``pruning.pruning_configs[0].pattern``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_BYTES = 1 << 20  # a recipe is a small text file
MAX_NODES = 100_000  # after aliases are expanded: nine lines of anchors can otherwise mean billions
MAX_DEPTH = 64


def decode(raw: bytes, source: str) -> str:
    """A recipe file's text: UTF-8 (a byte-order mark allowed), small, no NUL bytes."""
    if len(raw) > MAX_BYTES:
        raise RecipeError(f"{len(raw):,} bytes; a recipe is a small text file (at most {MAX_BYTES:,} bytes)",
                          source=source)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RecipeError("UTF-16 text; save the recipe as UTF-8", source=source, line=1)
    if b"\0" in raw:
        raise RecipeError("contains NUL bytes: not a text file", source=source,
                          line=raw[: raw.index(b"\0")].count(b"\n") + 1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecipeError("not UTF-8 text; save the recipe as UTF-8", source=source,
                          line=raw[: exc.start].count(b"\n") + 1) from None


def parse(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse one YAML document with the safe loader; return the data and ``{dotted key: line}``.
    Aliases are followed within :data:`MAX_NODES` and :data:`MAX_DEPTH`; one that contains itself is refused."""
    loader = RecipeLoader(text)
    try:
        node = loader.get_single_node()
        lines: LineMap = {}
        if node is not None:
            _walk(node, (), lines, source, [0], set())
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"not valid YAML: {problem}", source=source,
                          line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise RecipeError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise RecipeError(f"a value cannot be read: {str(exc).split(';')[0]}", source=source) from None
    finally:
        loader.dispose()
    return data, lines


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, source: str, count: list[int],
          open_nodes: set[int]) -> None:
    count[0] += 1
    line = node.start_mark.line + 1
    if count[0] > MAX_NODES:
        raise RecipeError(f"more than {MAX_NODES:,} values once its aliases are expanded", source=source, line=line)
    if len(path) > MAX_DEPTH:
        raise RecipeError(f"nested more than {MAX_DEPTH} levels deep", source=source, line=line, key=dotted(path))
    if id(node) in open_nodes:
        raise RecipeError("an alias refers to the collection it is in", source=source, line=line, key=dotted(path))
    open_nodes.add(id(node))
    _children(node, path, lines, source, count, open_nodes)
    open_nodes.discard(id(node))


def _children(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, source: str, count: list[int],
              open_nodes: set[int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                raise RecipeError("duplicate key", source=source,
                                  line=key_node.start_mark.line + 1, key=dotted(child))
            seen.add(key)
            lines[dotted(child)] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, source, count, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[dotted(child)] = item.start_mark.line + 1
            _walk(item, child, lines, source, count, open_nodes)
