"""`pipeline_config_list` and `custom_node_library_config_list` of an OVMS config.json -> PipelineConfig.

Rules: structure only, checked before anything listens: field types, node and data-item
references, reserved and duplicate names, cycles, unused nodes, unknown models and libraries,
name clashes with models, and the demultiplexing levels (OVMS's LIFO gather rule). Every
problem is one ConfigError naming the file, the pipeline and the node. Shapes and datatypes
need the loaded models and are checked in graph.py. Knows no OpenVINO, no HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastserve.errors import ConfigError

REQUEST = "request"  # OVMS's reserved node names
RESPONSE = "response"
DL_MODEL = "DL model"
CUSTOM = "custom"
# OVMS's schema bounds demultiply_count to -1..10000; -1 (and the deprecated 0) mean dynamic.
MAX_DEMULTIPLY_COUNT = 10_000
DYNAMIC = -1
PIPELINE_KEYS = {"name", "inputs", "outputs", "nodes", "demultiply_count"}
NODE_KEYS = {"name", "type", "model_name", "library_name", "version", "inputs", "outputs", "params",
             "demultiply_count", "gather_from_node"}


@dataclass(frozen=True, slots=True)
class Source:
    node: str  # REQUEST or a node name
    item: str  # a pipeline input name, or the source node's output alias


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    name: str
    base_path: str  # a .py file (absolute) or an importable module name


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    kind: str  # DL_MODEL or CUSTOM
    model_name: str | None
    version: int | None
    library: LibraryConfig | None
    params: dict[str, str]
    inputs: tuple[tuple[str, Source], ...]  # (the model's or library's input name, where it comes from)
    outputs: tuple[tuple[str, str], ...]  # (data_item, alias)
    demultiply_count: int | None  # None: no demultiplexing; DYNAMIC or N
    gather_from: str | None
    level: tuple[str, ...] = ()  # the demultiplexers this node runs inside, outermost first

    def aliases(self) -> dict[str, str]:
        return {alias: item for item, alias in self.outputs}


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[tuple[str, Source], ...]
    nodes: tuple[NodeConfig, ...]  # in a topological order
    demultiply_count: int | None  # the request node demultiplexes its inputs
    where: str  # "<file>: pipeline 'name'", the prefix of every message about it
    response_level: tuple[str, ...] = ()

    def node(self, name: str) -> NodeConfig:
        return next(n for n in self.nodes if n.name == name)

    def demultiplexers(self) -> dict[str, int]:
        found = {n.name: n.demultiply_count for n in self.nodes if n.demultiply_count is not None}
        if self.demultiply_count is not None:
            found[REQUEST] = self.demultiply_count
        return found


def parse_pipelines(doc: dict[str, Any], path: Path, model_names: set[str]) -> tuple[PipelineConfig, ...]:
    """The pipelines of a config.json document; raises the first ConfigError."""
    libraries = parse_libraries(doc.get("custom_node_library_config_list"), path)
    entries = doc.get("pipeline_config_list")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: pipeline_config_list: must be a list")
    pipelines: list[PipelineConfig] = []
    for index, entry in enumerate(entries):
        where = f"{path}: pipeline_config_list[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"{where}.name: required, a non-empty string without '/'")
        where = f"{path}: pipeline {name!r}"
        if name in model_names:
            raise ConfigError(f"{where}: the name is already used by a model in model_config_list")
        if any(p.name == name for p in pipelines):
            raise ConfigError(f"{where}: duplicate pipeline name (pipeline_config_list[{index}])")
        pipelines.append(_pipeline(entry, name, where, libraries, model_names))
    return tuple(pipelines)


def parse_libraries(entries: Any, path: Path) -> dict[str, LibraryConfig]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: custom_node_library_config_list: must be a list")
    libraries: dict[str, LibraryConfig] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: custom_node_library_config_list[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "base_path"}:
            raise ConfigError(f'{where}: must be {{"name": ..., "base_path": ...}}')
        name, base = entry.get("name"), entry.get("base_path")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: required, a non-empty string")
        if name in libraries:
            raise ConfigError(f"{where}.name: duplicate library name {name!r}")
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{where}.base_path: required, a .py file or a Python module name")
        libraries[name] = LibraryConfig(name, _library_path(base, path.parent, f"{where}.base_path"))
    return libraries


def _library_path(base: str, root: Path, where: str) -> str:
    """A path (has '/' or ends in .py) resolves against the config's folder; otherwise a module name."""
    if base.endswith((".so", ".dll", ".dylib")):
        raise ConfigError(f"{where}: {base} is a C library; fastserve's custom nodes are Python modules "
                          "(a .py file or an importable module name, see docs/pipelines.md)")
    if "/" in base or base.endswith(".py"):
        file = Path(base).expanduser()
        file = file if file.is_absolute() else (root / file).resolve()
        if not file.is_file():
            raise ConfigError(f"{where}: {file} is not a file")
        return str(file)
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", base):
        raise ConfigError(f"{where}: {base!r} is neither a .py file nor a Python module name")
    return base


def _pipeline(
    entry: dict[str, Any], name: str, where: str, libraries: dict[str, LibraryConfig], model_names: set[str]
) -> PipelineConfig:
    unknown = sorted(set(entry) - PIPELINE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(PIPELINE_KEYS))})")
    for key in ("inputs", "outputs", "nodes"):
        if not isinstance(entry.get(key), list) or not entry[key]:
            raise ConfigError(f"{where}: {key}: required, a non-empty list")
    inputs = entry["inputs"]
    if not all(isinstance(i, str) and i for i in inputs):
        raise ConfigError(f"{where}: inputs: must be a list of names")
    if len(set(inputs)) != len(inputs):
        raise ConfigError(f"{where}: inputs: duplicate name {_first_duplicate(inputs)!r}")
    demux = _demultiply_count(entry.get("demultiply_count", None), f"{where}: demultiply_count")
    nodes: dict[str, NodeConfig] = {}
    for index, raw in enumerate(entry["nodes"]):
        node = _node(raw, f"{where}: nodes[{index}]", libraries, model_names)
        if node.name in (REQUEST, RESPONSE):
            raise ConfigError(f"{where}: node {node.name!r}: the names request and response are reserved")
        if node.name in nodes:
            raise ConfigError(f"{where}: node {node.name!r}: duplicate node name")
        nodes[node.name] = node
    outputs = tuple(_connections(entry["outputs"], f"{where}: outputs", "output"))
    for node in nodes.values():
        for target, source in node.inputs:
            _check_source(source, f"{where}: node {node.name!r} input {target!r}", inputs, nodes)
    for target, source in outputs:
        _check_source(source, f"{where}: output {target!r}", inputs, nodes)
    order = _topological(nodes, outputs, where)
    used = {s.item for n in nodes.values() for _, s in n.inputs if s.node == REQUEST}
    used |= {s.item for _, s in outputs if s.node == REQUEST}
    for item in inputs:
        if item not in used:
            raise ConfigError(f"{where}: input {item!r} is not connected to any node or output")
    config = PipelineConfig(name, tuple(inputs), outputs, (), demux, where)
    return _levels(config, [nodes[n] for n in order])


def _node(raw: Any, where: str, libraries: dict[str, LibraryConfig], model_names: set[str]) -> NodeConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: required, a non-empty string")
    where = where.rsplit(": ", 1)[0] + f": node {name!r}"
    unknown = sorted(set(raw) - NODE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    kind = raw.get("type")
    model_name = raw.get("model_name")
    library: LibraryConfig | None = None
    if kind == DL_MODEL:
        if "library_name" in raw:
            raise ConfigError(f"{where}: library_name is for custom nodes; a DL model node takes model_name")
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError(f"{where}: model_name: required for a DL model node")
        if model_name not in model_names:
            raise ConfigError(f"{where}: model {model_name!r} is not in model_config_list")
    elif kind == CUSTOM:
        if "model_name" in raw:
            raise ConfigError(f"{where}: model_name is for DL model nodes; a custom node takes library_name")
        library_name = raw.get("library_name")
        if not isinstance(library_name, str) or not library_name:
            raise ConfigError(f"{where}: library_name: required for a custom node")
        library = libraries.get(library_name)
        if library is None:
            raise ConfigError(f"{where}: library {library_name!r} is not in custom_node_library_config_list")
    else:
        raise ConfigError(f'{where}: type: must be "DL model" or "custom", not {kind!r}')
    version = raw.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise ConfigError(f"{where}: version: must be an integer >= 1")
    params = raw.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise ConfigError(f"{where}: params: must be an object of string values")
    if not isinstance(raw.get("inputs"), list):
        raise ConfigError(f"{where}: inputs: required, a list")
    inputs = tuple(_connections(raw["inputs"], f"{where}: inputs", "input"))
    outputs = tuple(_aliases(raw.get("outputs"), f"{where}: outputs"))
    gather = raw.get("gather_from_node")
    if gather is not None and (not isinstance(gather, str) or not gather):
        raise ConfigError(f"{where}: gather_from_node: must be a node name")
    return NodeConfig(
        name, kind, model_name if kind == DL_MODEL else None, version, library, dict(params), inputs, outputs,
        _demultiply_count(raw.get("demultiply_count"), f"{where}: demultiply_count"), gather,
    )


def _connections(items: list[Any], where: str, what: str) -> list[tuple[str, Source]]:
    """[{"<name>": {"node_name": ..., "data_item": ...}}, ...] with unique names."""
    found: list[tuple[str, Source]] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f'{where}: each {what} must be {{"<name>": {{"node_name": ..., "data_item": ...}}}}')
        ((target, source),) = item.items()
        if not isinstance(source, dict) or set(source) != {"node_name", "data_item"} or not all(
            isinstance(v, str) and v for v in source.values()
        ):
            raise ConfigError(f"{where}: {what} {target!r}: needs exactly node_name and data_item, both strings")
        if any(t == target for t, _ in found):
            raise ConfigError(f"{where}: duplicate {what} {target!r}")
        found.append((target, Source(source["node_name"], source["data_item"])))
    return found


def _aliases(items: Any, where: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: required, a list of {{data_item, alias}}")
    found: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"data_item", "alias"} or not all(
            isinstance(v, str) and v for v in item.values()
        ):
            raise ConfigError(f'{where}: each output must be {{"data_item": ..., "alias": ...}}')
        if any(alias == item["alias"] for _, alias in found):
            raise ConfigError(f"{where}: duplicate alias {item['alias']!r}")
        found.append((item["data_item"], item["alias"]))
    return found


def _demultiply_count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= MAX_DEMULTIPLY_COUNT:
        raise ConfigError(f"{where}: must be an integer from -1 (dynamic) to {MAX_DEMULTIPLY_COUNT}")
    return DYNAMIC if value in (0, -1) else value  # OVMS still takes the deprecated 0 for dynamic


def _check_source(source: Source, where: str, inputs: list[str], nodes: dict[str, NodeConfig]) -> None:
    if source.node == REQUEST:
        if source.item not in inputs:
            raise ConfigError(f"{where}: {source.item!r} is not a pipeline input (inputs: {', '.join(inputs)})")
        return
    if source.node == RESPONSE:
        raise ConfigError(f"{where}: the response node has no outputs to connect from")
    if source.node not in nodes:
        raise ConfigError(f"{where}: refers to node {source.node!r}, which is not defined")
    # An item that is not an alias may still be the model's own output name, as in OVMS (checked in graph.py).
    aliases = nodes[source.node].aliases()
    if aliases and source.item not in aliases and nodes[source.node].kind == CUSTOM:
        raise ConfigError(f"{where}: node {source.node!r} has no output {source.item!r} "
                          f"(its outputs: {', '.join(aliases)})")


def _topological(nodes: dict[str, NodeConfig], outputs: tuple[tuple[str, Source], ...], where: str) -> list[str]:
    """Nodes in dependency order; a cycle or a node whose outputs reach no pipeline output is an error."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ConfigError(f"{where}: nodes form a cycle: {' -> '.join(reversed(cycle))}")
        state[name] = 1
        for _, source in nodes[name].inputs:
            if source.node != REQUEST:
                visit(source.node, path + [name])
        state[name] = 2
        order.append(name)

    for _, source in outputs:
        if source.node != REQUEST:
            visit(source.node, [])
    for name in nodes:  # cycles among nodes that reach no output are still cycles
        if name not in state:
            visit(name, [])
    reached = _reaching_response(nodes, outputs)
    for name in nodes:
        if name not in reached:
            raise ConfigError(f"{where}: node {name!r} is not connected to the response "
                              "(no pipeline output depends on it)")
    return order


def _reaching_response(nodes: dict[str, NodeConfig], outputs: tuple[tuple[str, Source], ...]) -> set[str]:
    reached: set[str] = set()
    stack = [s.node for _, s in outputs]
    while stack:
        name = stack.pop()
        if name == REQUEST or name in reached:
            continue
        reached.add(name)
        stack.extend(s.node for _, s in nodes[name].inputs)
    return reached


def _levels(config: PipelineConfig, ordered: list[NodeConfig]) -> PipelineConfig:
    """Each node's demultiplexing level; gathers must close the innermost open demultiplexer (LIFO)."""
    where = config.where
    demux = {n.name: n.demultiply_count for n in ordered if n.demultiply_count is not None}
    if config.demultiply_count is not None:
        demux[REQUEST] = config.demultiply_count
    if DYNAMIC in demux.values() and len(demux) > 1:
        raise ConfigError(f"{where}: a dynamic demultiply_count (-1) allows only one demultiplexer in the pipeline; "
                          f"this one has {len(demux)}: {', '.join(sorted(demux))}")
    levels: dict[str, tuple[str, ...]] = {REQUEST: ()}
    names = {n.name for n in ordered} | {REQUEST}

    def context(source: Source) -> tuple[str, ...]:
        level = levels[source.node]
        return level + (source.node,) if source.node in demux else level

    placed: list[NodeConfig] = []
    for node in ordered:
        here = f"{where}: node {node.name!r}"
        contexts = {context(s) for _, s in node.inputs}
        if len(contexts) > 1:
            raise ConfigError(f"{here}: its inputs come from different demultiplexing levels "
                              f"({' vs '.join(_describe_level(c) for c in sorted(contexts))}); "
                              "gather (gather_from_node) before joining them")
        level = contexts.pop() if contexts else ()
        if node.gather_from is not None:
            if node.gather_from not in demux:
                known = "a node without demultiply_count" if node.gather_from in names else "no node"
                raise ConfigError(f"{here}: gather_from_node {node.gather_from!r} is {known}; "
                                  "it must name a demultiplexer")
            if not level or level[-1] != node.gather_from:
                raise ConfigError(f"{here}: cannot gather from {node.gather_from!r} here: its inputs are "
                                  f"{_describe_level(level)}; gather the innermost demultiplexer first (LIFO)")
            level = level[:-1]
        levels[node.name] = level
        placed.append(_with_level(node, level))
    contexts = {context(s) for _, s in config.outputs}
    if len(contexts) > 1:
        raise ConfigError(f"{where}: the pipeline outputs come from different demultiplexing levels "
                          f"({' vs '.join(_describe_level(c) for c in sorted(contexts))})")
    return PipelineConfig(config.name, config.inputs, config.outputs, tuple(placed), config.demultiply_count,
                          where, contexts.pop())


def _with_level(node: NodeConfig, level: tuple[str, ...]) -> NodeConfig:
    return NodeConfig(node.name, node.kind, node.model_name, node.version, node.library, node.params, node.inputs,
                      node.outputs, node.demultiply_count, node.gather_from, level)


def _describe_level(level: tuple[str, ...]) -> str:
    return "not demultiplexed" if not level else "inside " + " > ".join(level)


def _first_duplicate(items: list[str]) -> str:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return ""
