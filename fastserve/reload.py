"""Hot reload as OVMS: version folders and config.json, polled or on POST /v1/config/reload.

Rules: one reload at a time (a lock). Everything slow runs in a daemon thread: reading the
config, listing version folders, compiling; the thread builds a complete new lookup table and
never touches the served one. The loop then swaps it in whole (Repository's rule), in one
callback, and hands replaced servables to Repository.retire: requests that already took a
version finish on it, and it ends once they gave back its infer requests. Failures never take
anything away: a config that does not parse changes nothing, a version that does not compile
leaves the versions it would replace serving, a reconfigured model that fails keeps its old
settings and versions. Each failure is logged once (not at every poll) and is not retried until
its files or settings change; /v1/config/reload answers it with OVMS's error text.

What changes what (OVMS docs/online_config_changes.md, model_version_policy.md):
- a new version folder, or one gone: versions load/retire as the model's version policy says;
- config.json: new models load, removed ones retire, a model whose settings changed reloads
  every version; pipelines are rebuilt against the new models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastserve.config import load_config_file
from fastserve.errors import ConfigError, FastServeError
from fastserve.models.loader import load_version, select_versions
from fastserve.models.repository import (
    AVAILABLE,
    END,
    LOADING,
    Repository,
    ServedModel,
    VersionStatus,
    log_loaded,
)
from fastserve.models.servable import Servable
from fastserve.settings import ModelSettings
from fastserve.storage.configfile import refresh_config

log = logging.getLogger("fastserve.reload")
T = TypeVar("T")
# Retiring versions are checked this often for their last request (seconds): a slot given back is
# noticed within 50 ms, at the cost of one list scan per tick while something retires.
COLLECT_INTERVAL = 0.05
# OVMS's error texts for POST /v1/config/reload (http_rest_api_handler.cpp) and their statuses:
# a file that cannot be read is FILE_INVALID (500); a config that does not parse or validate is
# JSON_INVALID (412); a missing base path PATH_INVALID (400); a model that fails to load 500.
CONFIG_UNREADABLE = "Config file not found or cannot open."
CONFIG_FAILED = "Reloading config file failed. Check server logs for more info."
VERSIONS_FAILED = "Reloading models versions failed. Check server logs for more info."
# ModelVersionStatusErrorCode of a version that failed to load (OVMS: LOADING + UNKNOWN).
FAILED = "UNKNOWN"


@dataclass
class Change:
    """What one reload found (worker thread), applied on the loop in one go."""

    table: dict[str, ServedModel]
    changed: bool = False
    config: bytes | None = None  # config.json bytes now accepted
    wanted: dict[str, ModelSettings] | None = None  # and the models it configures
    pipelines: Any = None
    new_pipelines: bool = False
    retire: list[Servable] = field(default_factory=list)
    status: list[tuple[str, int, VersionStatus]] = field(default_factory=list)
    error: FastServeError | None = None

    def fail(self, status: int, message: str) -> None:
        if self.error is None or status > self.error.status:
            self.error = FastServeError(message, status)


class Staged:
    """The new table as pipelines see a repository (names and get()), before it is swapped in."""

    model = Repository.model
    get = Repository.get

    def __init__(self, models: dict[str, ServedModel]) -> None:
        self.models = models


class Reloader:
    def __init__(self, repository: Repository, config_path: Path | None) -> None:
        self.repository = repository
        self.config_path = config_path
        self.accepted = _read(config_path) if config_path is not None else None
        self.wanted: dict[str, ModelSettings] | None = None  # models of the last accepted config.json change
        self.failed: dict[tuple[str, int], tuple[Any, ...]] = {}  # versions that failed, by what they were
        self.reported: set[str] = set()  # messages logged once until things change
        self.pipeline_names: set[str] = set()  # every pipeline ever served, for END in /v1/config
        self.lock = asyncio.Lock()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self._collecting: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        """A compile is running in the reload thread (shutdown cannot wait for it)."""
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Shutdown: compile nothing more; a change half compiled is dropped."""
        self.stopping = True

    async def watch(self, interval: float) -> None:
        """The --file_system_poll_wait_seconds loop (a task, cancelled on shutdown)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception:
                log.exception("reload failed")

    async def reload(self) -> Change:
        async with self.lock:
            change = await self._in_thread(self._prepare)
            if not self.stopping:
                self._apply(change)
            return change

    # Worker thread: read, compare, compile

    def _prepare(self) -> Change:
        current = self.repository.models
        change = Change(current)
        # What the accepted config asks for (a model that failed to load or reconfigure is still wanted).
        wanted = self.wanted if self.wanted is not None else {n: m.settings for n, m in current.items()}
        doc = None
        if self.config_path is not None:
            try:
                refresh_config(self.config_path)  # a remote config.json: fetched again (no-op for a local one)
                raw = _read(self.config_path)
            except OSError as exc:
                self._log_once(f"config reload: cannot read {self.config_path}: {exc.strerror}")
                change.fail(500, CONFIG_UNREADABLE)
                return change
            if raw != self.accepted:
                try:  # parsed again at every poll: a base path it names may appear meanwhile
                    models, doc = load_config_file(self.config_path)
                except ConfigError as exc:
                    self._log_once(f"config reload: {exc}; still serving the previous configuration")
                    change.fail(412, CONFIG_FAILED)
                    return change
                log.info("config reload: %s changed", self.config_path)
                self.reported.clear()
                wanted = change.wanted = {m.name: m for m in models}
                change.config, change.changed = raw, True
        failure = CONFIG_FAILED if change.config is not None else VERSIONS_FAILED
        table: dict[str, ServedModel] = {}
        for name, settings in wanted.items():
            table[name] = self._model(name, settings, current.get(name), change, failure)
        for name in current.keys() - wanted.keys():
            log.info("model %s is no longer in the configuration: unloading it", name)
            change.retire += current[name].versions.values()
            for version, status in list(self.repository.status.get(name, {}).items()):
                if status.error == FAILED:  # never served: nothing to wait for
                    change.status.append((name, version, VersionStatus(END)))
            change.changed = True
        if change.changed:
            change.table = table
        if doc is not None:
            self._pipelines(doc, change)
        return change

    def _model(self, name: str, settings: ModelSettings, old: ServedModel | None, change: Change,
               failure: str) -> ServedModel:
        """The model as it serves after this reload: `old` itself when nothing changes or loads."""
        same = old is not None and _comparable(old.settings) == _comparable(settings)
        try:
            desired = select_versions(settings)
        except ConfigError as exc:
            self._log_once(f"model {name}: {exc}; {_kept(name)}")
            change.fail(400 if not settings.base_path.exists() else 500, failure)
            return old if old is not None else ServedModel(settings, loading=False)
        if old is None:  # a new model serves whatever loads
            loaded = self._compile(settings, desired, change, failure)
            change.changed = True
            return self._served(settings, loaded, loaded, change)
        if not same:  # all or nothing: if a version fails, the old settings and versions keep serving
            if self._failed_before(settings, desired):
                change.fail(500, failure)
                return old
            log.info("model %s: its configuration changed: reloading every version", name)
            loaded = self._compile(settings, desired, change, failure)
            if len(loaded) < len(desired):
                for version in loaded.keys() - old.versions.keys():  # compiled, but not served without the rest
                    change.status.append((name, version, VersionStatus(LOADING, FAILED)))
                return old
            change.retire += old.versions.values()
            change.changed = True
            return self._served(settings, loaded, loaded, change)
        missing = {v: path for v, path in desired.items() if v not in old.versions}
        extra = [v for v in old.versions if v not in desired]
        for version, status in list(self.repository.status.get(name, {}).items()):
            if status.error == FAILED and version not in desired:  # a failed version gone from disk
                change.status.append((name, version, VersionStatus(END)))
        if not missing and not extra:
            return old
        loaded = self._compile(settings, missing, change, failure)
        versions = {**old.versions, **loaded}
        if len(loaded) == len(missing):  # every version the policy wants serves now: the others retire
            for version in extra:
                change.retire.append(versions.pop(version))
        if versions.keys() == old.versions.keys():
            return old
        change.changed = True
        return self._served(settings, versions, loaded, change)

    def _served(self, settings: ModelSettings, versions: dict[int, Servable], new: dict[int, Servable],
                change: Change) -> ServedModel:
        for version in new:
            change.status.append((settings.name, version, VersionStatus(AVAILABLE)))
        model = ServedModel(settings, dict(versions), loading=False)
        model.refresh_metadata()
        return model

    def _failed_before(self, settings: ModelSettings, versions: dict[int, Path]) -> bool:
        """A version of these files with these settings failed already (so the whole set would)."""
        return any(self.failed.get((settings.name, v)) == (_comparable(settings), *_fingerprint(path))
                   for v, path in versions.items())

    def _compile(self, settings: ModelSettings, versions: dict[int, Path], change: Change, failure: str
                 ) -> dict[int, Servable]:
        """The versions that compile; each failure is logged once and not retried until its files change."""
        loaded: dict[int, Servable] = {}
        name = settings.name
        for version, model_file in sorted(versions.items()):
            key, what = (name, version), (_comparable(settings), *_fingerprint(model_file))
            if self.stopping:
                break
            if self.failed.get(key) != what:
                self._mark(name, version)
                log.info("loading model %s version %d from %s", name, version, model_file)
                try:
                    loaded[version] = servable = load_version(self.repository.core, settings, version, model_file)
                except ConfigError as exc:
                    log.error("%s; %s", exc, _kept(name))
                except Exception:
                    log.exception("model %s version %d failed to load; %s", name, version, _kept(name))
                else:
                    self.failed.pop(key, None)
                    log_loaded(settings, servable, model_file)
                    continue
                self.failed[key] = what
            change.status.append((name, version, VersionStatus(LOADING, FAILED)))
            change.fail(500, failure)
        return loaded

    def _pipelines(self, doc: dict[str, Any], change: Change) -> None:
        if not doc.get("pipeline_config_list") and not self.repository.pipelines:
            return
        from fastserve.pipelines.registry import rebuild_pipelines

        assert self.config_path is not None
        try:
            change.pipelines = rebuild_pipelines(doc, self.config_path, Staged(change.table))
        except ConfigError as exc:
            log.error("config reload: pipelines: %s; the previous pipelines stay", exc)
            change.fail(412, CONFIG_FAILED)
            return
        change.new_pipelines = True

    def _mark(self, name: str, version: int) -> None:
        """Show a version that does not serve yet as LOADING in /v1/config while it compiles."""

        def mark() -> None:
            versions = self.repository.status.setdefault(name, {})
            if version not in versions or versions[version].state != AVAILABLE:
                versions[version] = VersionStatus(LOADING)

        self._loop.call_soon_threadsafe(mark)

    def _log_once(self, message: str) -> None:
        if message not in self.reported:
            self.reported.add(message)
            log.error("%s", message)

    # Event loop: swap, retire

    def _apply(self, change: Change) -> None:
        repository = self.repository
        if change.config is not None:
            self.accepted, self.wanted = change.config, change.wanted
        if change.table is not repository.models:
            repository.models = change.table
        if change.new_pipelines:
            repository.pipelines = change.pipelines
            self.pipeline_names.update(change.pipelines.pipelines)
        for servable in change.retire:
            versions = repository.status.setdefault(servable.name, {})
            repository.retire(servable, versions.setdefault(servable.version, VersionStatus(AVAILABLE)))
        for name, version, status in change.status:  # after retire: a reloaded version shows its new state
            repository.status.setdefault(name, {})[version] = status
        if change.changed:
            self.reported.clear()
        self._collect()

    def _collect(self) -> None:
        self._collecting = None
        if self.repository.collect_retired() and self._collecting is None:
            self._collecting = self._loop.call_later(COLLECT_INTERVAL, self._collect)

    async def _in_thread(self, work: Callable[[], T]) -> T:
        self._loop = loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            outcome: tuple[T | None, BaseException | None]
            try:
                outcome = (work(), None)
            except BaseException as exc:  # handed to the awaiting reload()
                outcome = (None, exc)
            try:
                loop.call_soon_threadsafe(_settle, done, *outcome)
            except RuntimeError:
                pass  # the loop is closed: the server stopped without waiting for us

        self.thread = threading.Thread(target=run, name="fastserve-reload", daemon=True)
        self.thread.start()
        return await done

    # /v1/config

    def status_body(self) -> bytes:
        """OVMS's GetModelStatus aggregate, byte for byte: models and pipelines by name."""
        entries: dict[str, list[tuple[int, str, str]]] = {}
        for name, versions in list(self.repository.status.items()):
            entries[name] = [(v, s.state, s.error) for v, s in sorted(versions.items())]
        registry = self.repository.pipelines
        served = dict(registry.pipelines) if registry is not None else {}
        self.pipeline_names.update(served)
        for name in self.pipeline_names - entries.keys():
            entries[name] = [(1, *self._pipeline_state(served.get(name)))]
        return ovms_status_json(entries)

    def _pipeline_state(self, pipeline: Any) -> tuple[str, str]:
        if pipeline is None:
            return END, "OK"
        try:
            pipeline.resolve(self.repository)
        except FastServeError:
            return LOADING, FAILED
        return AVAILABLE, "OK"


def ovms_status_json(entries: dict[str, list[tuple[int, str, str]]]) -> bytes:
    """'{\\n"name" : \\n{...}\\n}': OVMS joins protobuf's pretty JSON (indent 1) per name, sorted by name."""
    parts = []
    for name in sorted(entries):
        versions = [{"version": str(v), "state": state, "status": {"error_code": code, "error_message": code}}
                    for v, state, code in entries[name]]
        parts.append(f"{json.dumps(name)} : \n{json.dumps({'model_version_status': versions}, indent=1)}")
    return ("{\n" + ",\n".join(parts) + "\n}").encode()


def _comparable(settings: ModelSettings) -> ModelSettings:
    """Settings without where they were written: moving an entry in config.json is no change."""
    return dataclasses.replace(settings, source="")


def _fingerprint(model_file: Path) -> tuple[tuple[str, int, int], ...]:
    """A version's files as they are now: a failed version is retried only once they change."""
    found = []
    for path in (model_file, model_file.with_suffix(".bin")):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


def _kept(name: str) -> str:
    return f"model {name} keeps serving what it served"


def _read(path: Path) -> bytes:
    return path.read_bytes()
