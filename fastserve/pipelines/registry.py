"""The served pipelines by name, and their binding to whatever model versions are loaded now.

Rules: a PipelineRegistry is never changed after it is built. A config reload builds a new
one (rebuild_pipelines) and swaps `repository.pipelines` whole, so in-flight requests finish
on the definition they started with. Each request resolves its DL nodes' servables through
the repository: a model that is loading makes the pipeline 503, one that is gone or failed
makes it 404 (not ready), and a reloaded model version gets the pipeline re-checked against
its new specs (cached until the next change). Knows the repository, never HTTP.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastserve.errors import ConfigError, FastServeError, NotFound, Unavailable
from fastserve.pipelines.config import DL_MODEL, PipelineConfig, parse_pipelines
from fastserve.pipelines.custom import CustomLibrary
from fastserve.pipelines.graph import Compiled, Definition, compile_pipeline, define
from fastserve.pipelines.target import PipelineTarget
from fastserve.triton.stats import InferStats

log = logging.getLogger("fastserve.pipelines")
NOT_LOADED = "Pipeline is not loaded yet"  # OVMS's text for a pipeline that cannot serve


class ServedPipeline:
    __slots__ = ("definition", "name", "models", "_cache", "_target", "stats")

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.name = definition.config.name
        # (node name, model name, version or None) of every DL node
        self.models = [(n.name, n.model_name, n.version) for n in definition.config.nodes if n.kind == DL_MODEL]
        # (servables it was checked against, the compiled graph or None, the error text)
        self._cache: tuple[tuple[Any, ...], Compiled | None, str] | None = None
        self._target: PipelineTarget | None = None
        self.stats = InferStats()  # Triton's statistics (fastserve/triton/stats.py), for every binding

    def resolve(self, repository: Any) -> Compiled:
        """The pipeline bound to the current model versions; Unavailable/NotFound when it cannot serve."""
        servables = []
        for node, model, version in self.models:
            servables.append(self._servable(repository, node, model, version))
        cache = self._cache
        if cache is None or not _same(cache[0], servables):
            try:
                cache = (tuple(servables), self._compile(servables), "")
            except ConfigError as exc:
                log.error("%s", exc)
                cache = (tuple(servables), None, str(exc).removeprefix(self.definition.config.where + ": "))
            self._cache = cache
        if cache[1] is None:
            raise NotFound(f"{NOT_LOADED} - {cache[2]}")
        return cache[1]

    def target(self, repository: Any) -> PipelineTarget:
        """resolve() in the core's target shape, made once per compiled graph."""
        compiled = self.resolve(repository)
        target = self._target
        if target is None or target.compiled is not compiled:
            target = self._target = PipelineTarget(compiled, self.stats)
        return target

    def _servable(self, repository: Any, node: str, model: str, version: int | None) -> Any:
        try:
            return repository.get(model, version)
        except Unavailable:
            raise Unavailable(f"{NOT_LOADED} - node {node}: model {model} is still loading") from None
        except FastServeError as exc:
            which = f"model {model}" + (f" version {version}" if version is not None else "")
            raise NotFound(f"{NOT_LOADED} - node {node}: {which} is not available ({exc.message})") from None

    def _compile(self, servables: list[Any] | tuple[Any, ...]) -> Compiled:
        return compile_pipeline(self.definition, {node: s for (node, _, _), s in zip(self.models, servables,
                                                                                     strict=True)})

    def check(self, repository: Any) -> Compiled:
        """Bind now, as at start-up: every problem is a ConfigError naming the pipeline."""
        where = self.definition.config.where
        try:
            servables = tuple(self._servable(repository, n, m, v) for n, m, v in self.models)
        except FastServeError as exc:
            raise ConfigError(f"{where}: {exc.message.removeprefix(NOT_LOADED + ' - ')}") from None
        compiled = self._compile(servables)
        self._cache = (servables, compiled, "")
        return compiled


class PipelineRegistry:
    __slots__ = ("pipelines",)

    def __init__(self, pipelines: dict[str, ServedPipeline]) -> None:
        self.pipelines = pipelines

    def get(self, name: str) -> ServedPipeline | None:
        return self.pipelines.get(name)

    def __len__(self) -> int:
        return len(self.pipelines)

    def check_all(self, repository: Any, strict: bool = True) -> None:
        """Bind every pipeline to the loaded models; strict: raise the first ConfigError, else log it."""
        for pipeline in self.pipelines.values():
            try:
                compiled = pipeline.check(repository)
            except ConfigError as exc:
                if strict:
                    raise
                log.error("pipeline %s is not ready: %s", pipeline.name, exc)
                continue
            log.info("pipeline %s ready: inputs %s; outputs %s", pipeline.name, _describe(compiled.inputs),
                     _describe(compiled.outputs))


def build_registry(configs: tuple[PipelineConfig, ...], libraries: dict[str, CustomLibrary] | None = None
                   ) -> PipelineRegistry:
    """Definitions with their custom libraries imported (ConfigError on import or spec problems)."""
    loaded: dict[str, CustomLibrary] = {} if libraries is None else libraries
    return PipelineRegistry({c.name: ServedPipeline(define(c, loaded)) for c in configs})


def attach_pipelines(configs: tuple[PipelineConfig, ...], repository: Any) -> PipelineRegistry:
    """Start-up: serve the pipelines from `repository`, checked once every model has loaded (ConfigError then)."""
    registry = build_registry(configs)
    repository.pipelines = registry
    if configs:
        repository.after_load.append(lambda: registry.check_all(repository, strict=True))
    return registry


def rebuild_pipelines(doc: dict[str, Any], config_path: Path, repository: Any, strict: bool = False
                      ) -> PipelineRegistry:
    """Hot reload: a new registry from a config.json document, bound to the repository's current models.

    Structural errors raise ConfigError (keep the old registry then). A pipeline that does not fit
    the loaded models is kept but not ready (404 naming the reason), unless `strict`. The caller
    swaps it in: `repository.pipelines = rebuild_pipelines(doc, path, repository)`.
    """
    configs = parse_pipelines(doc, config_path, set(repository.models))
    registry = build_registry(configs)
    registry.check_all(repository, strict=strict)
    return registry


def _same(cached: tuple[Any, ...], current: list[Any]) -> bool:
    if len(cached) != len(current):
        return False
    for old, new in zip(cached, current):  # noqa: B905 (lengths checked)
        if old is not new:
            return False
    return True


def _describe(specs: dict[str, Any]) -> str:
    return ", ".join(f"{s.name} {s.datatype_name} {s.describe_shape()}" for s in specs.values())
