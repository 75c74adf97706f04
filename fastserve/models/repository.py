"""The served models by name and version, and their state.

Rules: name/version -> Servable lookups for the handlers (404/503 as FastServeErrors), and
metadata bytes built once per model version. Loading goes through loader.py; the lookup
tables are replaced whole, never mutated in place, so a lookup on the loop never sees a
half-updated model while a reload runs in a worker thread. Loading can be asked to stop
(stop_loading) and then stops before the next version: a compile itself cannot be interrupted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openvino as ov
import orjson

from fastserve.errors import ModelNotFound, NotFound, Unavailable, VersionNotFound
from fastserve.models.loader import load_version, select_versions
from fastserve.models.servable import Servable
from fastserve.settings import ModelSettings

log = logging.getLogger("fastserve.models")


@dataclass(slots=True)
class ServedModel:
    """All served versions of one model name."""

    settings: ModelSettings
    versions: dict[int, Servable] = field(default_factory=dict)
    loading: bool = True
    metadata: dict[int, bytes] = field(default_factory=dict)

    @property
    def latest(self) -> Servable | None:
        return self.versions[max(self.versions)] if self.versions else None

    def refresh_metadata(self) -> None:
        served = [str(v) for v in sorted(self.versions)]
        self.metadata = {v: model_metadata(s, served) for v, s in self.versions.items()}


def model_metadata(servable: Servable, versions: list[str]) -> bytes:
    def describe(specs: dict) -> list[dict]:
        return [{"name": s.name, "datatype": s.datatype_name, "shape": s.metadata_shape} for s in specs.values()]

    return orjson.dumps(
        {
            "name": servable.name,
            "versions": versions,
            "platform": "OpenVINO",
            "inputs": describe(servable.inputs),
            "outputs": describe(servable.outputs),
        }
    )


class Repository:
    def __init__(self, models: tuple[ModelSettings, ...], cache_dir: Path | None = None) -> None:
        self.core = ov.Core()
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.models: dict[str, ServedModel] = {m.name: ServedModel(m) for m in models}
        self.ready = False
        self._stop = threading.Event()
        # DAG pipelines (fastserve/pipelines/registry.py), looked up after models: replaced whole on reload.
        self.pipelines: Any = None
        # Run in the loading thread once every model is loaded, before ready turns true (may raise ConfigError).
        self.after_load: list[Callable[[], None]] = []

    # Lookups (event loop)

    def model(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound()
        return model

    def get(self, name: str, version: int | None) -> Servable:
        """The servable for an infer request: latest when no version is given."""
        model = self.model(name)
        if version is None:
            servable = model.latest
            if servable is None:
                raise _not_loaded(model)
            return servable
        servable = model.versions.get(version)
        if servable is None:
            if model.loading:
                raise _not_loaded(model)
            raise VersionNotFound()
        return servable

    def metadata(self, name: str, version: int | None) -> bytes:
        servable = self.get(name, version)
        return self.model(name).metadata[servable.version]

    # Loading (worker thread)

    def plan(self) -> dict[str, dict[int, Path]]:
        """Which versions each model will serve; ConfigErrors for bad paths, before anything listens."""
        return {name: select_versions(model.settings) for name, model in self.models.items()}

    def stop_loading(self) -> None:
        """Ask load_all (in its thread) to stop before the next version."""
        self._stop.set()

    def load_all(self, plan: dict[str, dict[int, Path]]) -> None:
        """Compile every planned version, each once; raises the first ConfigError. Ready when all are loaded."""
        for name, versions in plan.items():
            model = self.models[name]
            loaded = {}
            for version, model_file in sorted(versions.items()):
                if self._stop.is_set():
                    log.info("model loading stopped before model %s version %d", name, version)
                    return
                servable = load_version(self.core, model.settings, version, model_file)
                loaded[version] = servable
                log.info(
                    "loaded model %s version %d on %s from %s: inputs %s; outputs %s; %s",
                    name,
                    version,
                    model.settings.target_device,
                    model_file,
                    _describe(servable.inputs),
                    _describe(servable.outputs),
                    servable.describe_execution(),  # inline/async, nireq, warm-up, batching
                )
            model.versions = loaded
            model.refresh_metadata()
            model.loading = False
        for hook in self.after_load:
            hook()
        self.ready = True


def _describe(specs: dict) -> str:
    return ", ".join(f"{s.name} {s.datatype_name} {s.describe_shape()}" for s in specs.values())


def _not_loaded(model: ServedModel) -> NotFound | Unavailable:
    if model.loading:
        return Unavailable("Model with requested version is not loaded yet")
    return NotFound("Model with requested version is not loaded yet")
