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
    Aliases are followed within :data:`MAX_NODES` and :data:`MAX_DEPTH`; one that contains itself is refused.
    Merge keys (``<<: *defaults``) work as in PyYAML (YAML 1.1): a mapping's own keys win over merged ones;
    a key the mapping itself spells twice is an error."""
    loader = RecipeLoader(text)
    try:
        node = loader.get_single_node()
        walk = _Walk(source, loader)
        if node is not None:
            walk.node(node, ())
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
    return data, walk.lines


MERGE = "tag:yaml.org,2002:merge"


class _Walk:
    """One pass over the node tree: the line of every key, with aliases and merges expanded within budget."""

    def __init__(self, source: str, loader: RecipeLoader):
        self.source, self.loader, self.lines, self.count = source, loader, {}, 0
        self.open_nodes: set[int] = set()
        self.inherited: dict[int, int] = {}  # mapping node -> how many of its entries came from merge keys

    def error(self, message: str, node: yaml.Node, path: tuple[Any, ...]) -> RecipeError:
        return RecipeError(message, source=self.source, line=node.start_mark.line + 1, key=dotted(path))

    def spend(self, values: int, node: yaml.Node) -> None:
        self.count += values
        if self.count > MAX_NODES:
            raise self.error(f"more than {MAX_NODES:,} values once its aliases are expanded", node, ())

    def node(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.spend(1, node)
        if len(path) > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep", node, path)
        if id(node) in self.open_nodes:
            raise self.error("an alias refers to the collection it is in", node, path)
        self.open_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self.mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                self.lines[dotted(child)] = item.start_mark.line + 1
                self.node(item, child)
        self.open_nodes.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> None:
        inherited = self.flatten(node, path, set())
        seen: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = str(key_node.value)
            child = (*path, key)
            if index >= inherited:  # a merged key may be overridden; the mapping's own keys are unique
                if key in seen:
                    raise self.error("duplicate key", key_node, child)
                seen.add(key)
            self.lines[dotted(child)] = key_node.start_mark.line + 1
            self.node(value_node, child)

    def flatten(self, node: yaml.MappingNode, path: tuple[Any, ...], active: set[int]) -> int:
        """Merge ``node``'s merge keys with the loader's own code (so the data is PyYAML's, whatever its
        version), and return how many of its entries came from them. Merged mappings are flattened first,
        here, so a merge that contains itself is refused instead of recursing forever."""
        if id(node) in self.inherited:
            return self.inherited[id(node)]
        if id(node) in active:
            raise self.error("a merge key (<<) refers to the mapping it is in", node, path)
        active.add(id(node))
        own = 0
        for key_node, value_node in node.value:
            if key_node.tag != MERGE:
                own += 1
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            if not all(isinstance(source, yaml.MappingNode) for source in sources):
                raise self.error("a merge key (<<) takes a mapping or a list of mappings", key_node, path)
            for source in sources:
                self.flatten(source, path, active)
        self.loader.flatten_mapping(node)
        inherited = self.inherited[id(node)] = len(node.value) - own
        self.spend(inherited, node)
        active.discard(id(node))
        return inherited
