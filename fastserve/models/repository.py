"""The served models by name and version, and their state.

Rules: name/version -> Servable lookups for the handlers (404/503 as FastServeErrors), and
metadata bytes built once per model version. Loading goes through loader.py; the lookup
tables are replaced whole, never mutated in place, so a lookup on the loop never sees a
half-updated model while a reload runs in a worker thread. Loading can be asked to stop
(stop_loading) and then stops before the next version: a compile itself cannot be interrupted.
Hot reload (fastserve/reload.py) swaps `models` on the loop and hands replaced servables to
retire(): they stay UNLOADING until every request that took them has given its slot back, then
END (OVMS's version states, reported by /v1/config from `status`).
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
# OVMS's ModelVersionState names, as GET /v1/config reports them.
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass(slots=True)
class VersionStatus:
    """One version's state for /v1/config; error is OVMS's error_code: OK, or UNKNOWN when it failed to load."""

    state: str = LOADING
    error: str = "OK"


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
        # name -> version -> state, for /v1/config: every model ever configured, removed ones as END.
        self.status: dict[str, dict[int, VersionStatus]] = {m.name: {} for m in models}
        # Replaced servables still serving requests that took them before the swap (event loop only).
        self.retiring: list[tuple[Servable, VersionStatus]] = []

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

    def servables(self) -> list[Servable]:
        """Every compiled version still in use: served ones and retiring ones."""
        served = [s for model in list(self.models.values()) for s in list(model.versions.values())]
        return served + [servable for servable, _ in list(self.retiring)]

    # Retiring (event loop): replaced versions end once their requests are done

    def retire(self, servable: Servable, status: VersionStatus) -> None:
        status.state = UNLOADING
        self.retiring.append((servable, status))

    def collect_retired(self) -> int:
        """END every retiring version with no request left on it; how many are still draining."""
        still = []
        for servable, status in self.retiring:
            if drained(servable):
                status.state = END
                log.info("model %s version %d unloaded", servable.name, servable.version)
            else:
                still.append((servable, status))
        self.retiring = still
        return len(still)

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
            self.status[name] = {v: VersionStatus() for v in versions}
        for name, versions in plan.items():
            model = self.models[name]
            loaded = {}
            for version, model_file in sorted(versions.items()):
                if self._stop.is_set():
                    log.info("model loading stopped before model %s version %d", name, version)
                    return
                servable = load_version(self.core, model.settings, version, model_file)
                loaded[version] = servable
                self.status[name][version].state = AVAILABLE
                log_loaded(model.settings, servable, model_file)
            model.versions = loaded
            model.refresh_metadata()
            model.loading = False
        for hook in self.after_load:
            hook()
        self.ready = True


def log_loaded(settings: ModelSettings, servable: Servable, model_file: Path) -> None:
    log.info(
        "loaded model %s version %d on %s from %s: inputs %s; outputs %s; %s",
        settings.name,
        servable.version,
        settings.target_device,
        model_file,
        _describe(servable.inputs),
        _describe(servable.outputs),
        servable.describe_execution(),  # inline/async, nireq, warm-up, batching
    )


def drained(servable: Servable) -> bool:
    """No request holds or waits for an infer request of this version (nor sits in its batcher)."""
    front = getattr(servable.infer, "__self__", None)  # a Batcher when batching is on
    queued = getattr(front, "outstanding", 0)
    return servable.pool.busy == 0 and servable.pool.waiting == 0 and not queued


def _describe(specs: dict) -> str:
    return ", ".join(f"{s.name} {s.datatype_name} {s.describe_shape()}" for s in specs.values())


def _not_loaded(model: ServedModel) -> NotFound | Unavailable:
    if model.loading:
        return Unavailable("Model with requested version is not loaded yet")
    return NotFound("Model with requested version is not loaded yet")
