"""Safe YAML parsing that remembers the line of every key, so errors can point at it."""

from __future__ import annotations

from typing import Any

import yaml

from .errors import RecipeError

LineMap = dict[str, int]


def dotted(path: tuple[Any, ...]) -> str:
    """``("pruning", "pruning_configs", 0, "pattern")`` -> ``pruning.pruning_configs[0].pattern``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse one YAML document with the safe loader; return the data and ``{dotted key: line}``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"not valid YAML: {problem}", source=source,
                          line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    lines: LineMap = {}
    if node is not None:
        _walk(node, (), lines, source)
    return data, lines


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, source: str) -> None:
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
            _walk(value_node, child, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[dotted(child)] = item.start_mark.line + 1
            _walk(item, child, lines, source)
