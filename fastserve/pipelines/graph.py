"""A pipeline bound to loaded models: tensor specs checked along every connection, runtime tables.

Rules: `define` imports a pipeline's custom libraries and reads their specs (no models needed);
`compile_pipeline` binds a definition to the servables of its DL nodes, checks every
connection (datatype equal, shapes intersecting after demultiplexing drops the first dim and
gathering adds one) and derives the pipeline's own input and output TensorSpecs (metadata and
request binding). Problems are ConfigErrors naming the pipeline and the node. The result is
immutable: a reload builds a new one. Knows TensorSpec and servables' `inputs`/`outputs`,
never OpenVINO or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fastserve.errors import ConfigError
from fastserve.pipelines.config import CUSTOM, DYNAMIC, REQUEST, NodeConfig, PipelineConfig, Source
from fastserve.pipelines.custom import CustomLibrary, load_library
from fastserve.v2.types import Dim, TensorSpec

REQUEST_NODE, MODEL_NODE, CUSTOM_NODE, RESPONSE_NODE = range(4)
PIPELINE_VERSION = "1"  # OVMS: pipelines are not versioned and report versions ["1"]
Dims = tuple[Dim, ...] | None  # None: any rank


@dataclass(frozen=True, slots=True)
class Definition:
    """A parsed pipeline with its custom libraries loaded and their declared specs read."""

    config: PipelineConfig
    libraries: dict[str, CustomLibrary]  # node name -> library
    custom_specs: dict[str, tuple[dict[str, TensorSpec], dict[str, TensorSpec]]]  # node -> (inputs, outputs)


class RNode:
    """One node as the executor runs it. Slots are its inputs by position; outputs are a list by position."""

    __slots__ = ("index", "name", "kind", "slots", "slot_names", "checks", "edges", "demux", "gather_depth",
                 "gather_from", "gather_counts", "servable", "wanted", "library", "params", "out_names", "out_specs")

    def __init__(self, index: int, name: str, kind: int, slots: int) -> None:
        self.index = index
        self.name = name
        self.kind = kind
        self.slots = slots
        self.slot_names: list[str] = []
        self.checks: list[TensorSpec | None] = [None] * slots  # spec to check an input against at run time
        self.edges: list[tuple[int, int, int]] = []  # (consumer node index, consumer slot, my output position)
        self.demux: int | None = None
        self.gather_depth = 0  # how many demultiplexing levels this node's inputs are stacked over
        self.gather_from = -1  # the demultiplexer node closed by a depth-1 gather
        self.gather_counts: tuple[int, ...] = ()  # fixed counts of the levels gathered (depth > 1)
        self.servable: Any = None
        self.wanted: list[int] = []  # model output indices, in output position order
        self.library: CustomLibrary | None = None
        self.params: dict[str, str] = {}
        self.out_names: list[str] = []
        self.out_specs: list[TensorSpec] = []


@dataclass(frozen=True, slots=True)
class Compiled:
    name: str
    nodes: tuple[RNode, ...]  # request first, response last, in dependency order
    inputs: dict[str, TensorSpec]  # the pipeline's inputs by name (index: position in the config)
    outputs: dict[str, TensorSpec]
    metadata: bytes
    passthrough: frozenset[str]  # inputs only the response reads: any datatype and shape
    image_specs: dict[str, TensorSpec]  # 5-D inputs of a demultiplexing request, as 4-D specs for images
    version_text: str = PIPELINE_VERSION


def define(config: PipelineConfig, loaded: dict[str, CustomLibrary] | None = None) -> Definition:
    """Import the custom libraries (shared through `loaded` by library name) and check their connections."""
    loaded = {} if loaded is None else loaded
    libraries: dict[str, CustomLibrary] = {}
    specs: dict[str, tuple[dict[str, TensorSpec], dict[str, TensorSpec]]] = {}
    for node in config.nodes:
        if node.kind != CUSTOM or node.library is None:
            continue
        here = f"{config.where}: node {node.name!r}"
        library = loaded.get(node.library.name)
        if library is None:
            library = loaded[node.library.name] = load_library(node.library, here)
        libraries[node.name] = library
        inputs, outputs = library.specs("inputs", node.params, here), library.specs("outputs", node.params, here)
        _check_targets(node, inputs, here, f"library {library.name!r}")
        for item, _ in node.outputs:
            if item not in outputs:
                raise ConfigError(f"{here}: library {library.name!r} has no output {item!r} "
                                  f"(its outputs: {', '.join(outputs)})")
        specs[node.name] = (inputs, outputs)
    return Definition(config, libraries, specs)


def compile_pipeline(definition: Definition, servables: dict[str, Any]) -> Compiled:
    """Bind to the servables of the DL nodes (node name -> servable) and check every connection."""
    return _Binder(definition, servables).build()


class _Binder:
    """One compile_pipeline call: runtime nodes first, then every connection, then the response."""

    def __init__(self, definition: Definition, servables: dict[str, Any]) -> None:
        self.definition = definition
        self.config = config = definition.config
        self.demux = config.demultiplexers()
        request = RNode(0, REQUEST, REQUEST_NODE, 0)
        request.demux = config.demultiply_count
        self.nodes = [request]
        self.by_name = {REQUEST: request}
        self.out_specs: dict[str, dict[str, TensorSpec]] = {}  # producer -> output item -> spec
        self.in_specs: dict[str, dict[str, TensorSpec]] = {}
        self.request_specs: dict[str, TensorSpec] = {}
        self.positions: dict[tuple[str, str], int] = {}  # (producer, item) -> output position
        self.counts: dict[str, int] = {}  # producer -> outputs used so far
        for index, node in enumerate(config.nodes, 1):
            self._add(index, node, servables)

    def build(self) -> Compiled:
        config = self.config
        for node in config.nodes:
            self._connect_inputs(node)
        outputs = self._response()
        passthrough = frozenset(n for n in config.inputs if n not in self.request_specs)
        inputs = {n: _reindexed(self.request_specs.get(n) or _unspecified(n), config.inputs.index(n))
                  for n in sorted(config.inputs)}
        images: dict[str, TensorSpec] = {}
        if config.demultiply_count is not None:
            for name, spec in inputs.items():
                image = _image_spec(spec)
                if image is not None:
                    images[name] = image
        return Compiled(config.name, tuple(self.nodes), inputs, outputs, _metadata(config.name, inputs, outputs),
                        passthrough, images)

    def _add(self, index: int, node: NodeConfig, servables: dict[str, Any]) -> None:
        here = f"{self.config.where}: node {node.name!r}"
        if node.kind == CUSTOM:
            rnode = RNode(index, node.name, CUSTOM_NODE, 0)
            inputs, outputs = self.definition.custom_specs[node.name]
            rnode.library, rnode.params = self.definition.libraries[node.name], node.params
            produced = {alias: outputs[item] for item, alias in node.outputs}
        else:
            rnode = RNode(index, node.name, MODEL_NODE, 0)
            servable = rnode.servable = servables[node.name]
            inputs, outputs = servable.inputs, servable.outputs
            _check_targets(node, inputs, here, f"model {node.model_name!r}")
            produced = dict(outputs)  # OVMS lets a consumer name the model's own output too
            for item, alias in node.outputs:
                if item not in outputs:
                    raise ConfigError(f"{here}: model {node.model_name!r} has no output {item!r} "
                                      f"(its outputs: {', '.join(outputs)})")
                produced[alias] = outputs[item]
        rnode.slots = len(inputs)
        rnode.slot_names = [s.name for s in sorted(inputs.values(), key=lambda s: s.index)]
        rnode.checks = [None] * rnode.slots
        rnode.demux = node.demultiply_count
        self.out_specs[node.name], self.in_specs[node.name] = produced, inputs
        self.nodes.append(rnode)
        self.by_name[node.name] = rnode

    def _position(self, source: Source) -> int:
        """Where the producer puts `source.item` in its outputs list (allocated on first use)."""
        if source.node == REQUEST:
            return self.config.inputs.index(source.item)
        key = (source.node, source.item)
        if key not in self.positions:
            producer = self.by_name[source.node]
            spec = self.out_specs[source.node][source.item]
            if producer.kind == MODEL_NODE:
                producer.wanted.append(spec.index)
            else:
                producer.out_names.append(self.config.node(source.node).aliases()[source.item])
                producer.out_specs.append(spec)
            self.positions[key] = self.counts.get(source.node, 0)
            self.counts[source.node] = self.positions[key] + 1
        return self.positions[key]

    def _produced(self, source: Source, where: str) -> TensorSpec:
        if source.node == REQUEST:
            return self.request_specs.get(source.item) or _unspecified(source.item)
        produced = self.out_specs[source.node].get(source.item)
        if produced is None:
            aliases = ", ".join(a for _, a in self.config.node(source.node).outputs)
            raise ConfigError(f"{where}: node {source.node!r} has no output {source.item!r} (its outputs: {aliases})")
        return produced

    def _connect_inputs(self, node: NodeConfig) -> None:
        consumer = self.by_name[node.name]
        gather = None if node.gather_from is None else _count_dim(self.demux[node.gather_from])
        for target, source in node.inputs:
            here = f"{self.config.where}: node {node.name!r} input {target!r}"
            spec = self.in_specs[node.name][target]
            if source.node == REQUEST:
                _merge_request(self.request_specs, source.item, spec, gather, self.config.demultiply_count, here)
            else:
                produced = self._produced(source, here)
                dims = _arriving(produced, source.node, self.demux, gather, here)
                _connect(produced, dims, spec, f"{here} <- node {source.node!r} output {source.item!r}")
                if not _within(dims, spec.dims):
                    consumer.checks[spec.index] = spec
            self.by_name[source.node].edges.append((consumer.index, spec.index, self._position(source)))
        if node.gather_from is not None:
            consumer.gather_depth = 1
            consumer.gather_from = self.by_name[node.gather_from].index
            consumer.gather_counts = (self.demux[node.gather_from],)

    def _response(self) -> dict[str, TensorSpec]:
        """The pipeline's outputs: each gains one leading dim per demultiplexer still open."""
        config, demux = self.config, self.demux
        response = RNode(len(self.nodes), "response", RESPONSE_NODE, len(config.outputs))
        response.slot_names = [name for name, _ in config.outputs]
        self.nodes.append(response)
        outputs: dict[str, TensorSpec] = {}
        gathered = tuple(_count_dim(demux[d]) for d in config.response_level)
        for slot, (name, source) in enumerate(config.outputs):
            here = f"{config.where}: output {name!r}"
            produced = self._produced(source, here)
            dims = _split(produced.dims, source.node, demux, here)
            outputs[name] = TensorSpec(name, produced.datatype, produced.type_name,
                                       None if dims is None else gathered + dims, slot)
            self.by_name[source.node].edges.append((response.index, slot, self._position(source)))
        response.gather_depth = len(config.response_level)
        if response.gather_depth == 1:
            response.gather_from = self.by_name[config.response_level[0]].index
        response.gather_counts = tuple(demux[d] for d in config.response_level)
        return dict(sorted(outputs.items()))


def _check_targets(node: NodeConfig, inputs: dict[str, TensorSpec], where: str, what: str) -> None:
    connected = {target for target, _ in node.inputs}
    for target in connected:
        if target not in inputs:
            raise ConfigError(f"{where}: {what} has no input {target!r} (its inputs: {', '.join(inputs)})")
    for name in inputs:
        if name not in connected:
            raise ConfigError(f"{where}: input {name!r} of {what} is not connected")


def _count_dim(count: int) -> Dim:
    return (0, -1) if count == DYNAMIC else (count, count)


def _split(dims: Dims, producer: str, demux: dict[str, int], where: str) -> Dims:
    """The dims each branch gets when `producer` demultiplexes: the first dim is dropped."""
    if producer not in demux or dims is None:
        return dims
    if not dims:
        raise ConfigError(f"{where}: node {producer!r} demultiplexes a scalar; it needs a first dimension to split")
    count = demux[producer]
    if count != DYNAMIC and _intersect_dim(dims[0], (count, count)) is None:
        raise ConfigError(f"{where}: demultiply_count {count} of node {producer!r} does not match the first "
                          f"dimension of {_text(dims)}")
    return dims[1:]


def _arriving(produced: TensorSpec, producer: str, demux: dict[str, int], gather: Dim | None, where: str) -> Dims:
    dims = _split(produced.dims, producer, demux, where)
    if gather is not None and dims is not None:
        dims = (gather, *dims)
    return dims


def _connect(produced: TensorSpec, dims: Dims, spec: TensorSpec, where: str) -> None:
    if produced.datatype is not spec.datatype:
        raise ConfigError(f"{where}: datatype mismatch: {produced.datatype_name} arrives, {spec.datatype_name} "
                          "is expected")
    if not _intersect(dims, spec.dims)[0]:
        raise ConfigError(f"{where}: shape mismatch: {_text(dims)} arrives (after demultiplexing/gathering), "
                          f"{spec.describe_shape()} is expected")


def _merge_request(found: dict[str, TensorSpec], item: str, spec: TensorSpec, gather: Dim | None,
                   request_demux: int | None, where: str) -> None:
    """What the request must send for `item` so this input gets `spec`; intersected over all its uses."""
    dims = spec.dims
    if dims is not None and gather is not None:  # gathering from the request undoes its split
        first = _intersect_dim(dims[0], gather) if dims else None
        if first is None:
            raise ConfigError(f"{where}: shape {spec.describe_shape()} cannot take the gathered request input")
        dims = (first, *dims[1:])
    elif dims is not None and request_demux is not None:
        dims = (_count_dim(request_demux), *dims)
    wanted = TensorSpec(item, spec.datatype, spec.type_name, dims, 0)
    known = found.get(item)
    if known is None:
        found[item] = wanted
        return
    if known.datatype is not wanted.datatype:
        raise ConfigError(f"{where}: pipeline input {item!r} feeds inputs of different datatypes "
                          f"({known.datatype_name} and {wanted.datatype_name})")
    fits, merged = _intersect(known.dims, wanted.dims)
    if not fits:
        raise ConfigError(f"{where}: pipeline input {item!r} feeds inputs of incompatible shapes "
                          f"({known.describe_shape()} and {wanted.describe_shape()})")
    found[item] = TensorSpec(item, known.datatype, known.type_name, merged, 0)


def _intersect_dim(a: Dim, b: Dim) -> Dim | None:
    low = max(a[0], b[0])
    high = b[1] if a[1] == -1 else a[1] if b[1] == -1 else min(a[1], b[1])
    return None if high != -1 and high < low else (low, high)


def _intersect(a: Dims, b: Dims) -> tuple[bool, Dims]:
    """Whether some shape fits both, and the dims both allow (None: any rank)."""
    if a is None or b is None:
        return True, b if a is None else a
    if len(a) != len(b):
        return False, None
    merged = []
    for x, y in zip(a, b, strict=True):
        dim = _intersect_dim(x, y)
        if dim is None:
            return False, None
        merged.append(dim)
    return True, tuple(merged)


def _within(a: Dims, b: Dims) -> bool:
    """Whatever fits `a` also fits `b`, so no run-time check is needed."""
    if b is None:
        return True
    if a is None or len(a) != len(b):
        return False
    return all(y[0] <= x[0] and (y[1] == -1 or (x[1] != -1 and x[1] <= y[1])) for x, y in zip(a, b, strict=True))


def _text(dims: Dims) -> str:
    return TensorSpec("", None, "", dims).describe_shape()


def _unspecified(name: str) -> TensorSpec:
    return TensorSpec(name, None, "undefined", None, 0)


def _reindexed(spec: TensorSpec, index: int) -> TensorSpec:
    return TensorSpec(spec.name, spec.datatype, spec.type_name, spec.dims, index)


def _image_spec(spec: TensorSpec) -> TensorSpec | None:
    """[D,1,H,W,C] numeric -> [D,H,W,C]: N encoded images feed N branches of one image each (OVMS's 5-D case)."""
    dims = spec.dims
    if dims is None or len(dims) != 5 or spec.datatype is None or spec.datatype.name == "BYTES":
        return None
    if _intersect_dim(dims[1], (1, 1)) is None:
        return None
    return TensorSpec(spec.name, spec.datatype, spec.type_name, (dims[0], *dims[2:]), spec.index)


def _metadata(name: str, inputs: dict[str, TensorSpec], outputs: dict[str, TensorSpec]) -> bytes:
    def describe(specs: dict[str, TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype_name, "shape": s.metadata_shape} for s in specs.values()]

    return orjson.dumps({"name": name, "versions": [PIPELINE_VERSION], "platform": "OpenVINO",
                         "inputs": describe(inputs), "outputs": describe(outputs)})
