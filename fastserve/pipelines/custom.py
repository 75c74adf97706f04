"""Custom nodes written in Python: where OVMS loads a C library, fastserve imports a module.

Rules: a library is a .py file or an importable module (custom_node_library_config_list
base_path) exposing three functions, all taking the node's `params` (dict of str -> str):

    inputs_info(params)  -> {name: (datatype, shape)}   what execute() receives
    outputs_info(params) -> {name: (datatype, shape)}   what execute() returns
    execute(inputs, params) -> {name: numpy array}      inputs: {name: numpy array}

datatype is a KServe name ("FP32", "INT64", "BYTES", ...); shape a list of ints with -1 for
any size, or None for any rank. Optional `RUN_INLINE = True` runs execute() on the event loop
(for sub-millisecond work); otherwise it runs in a small thread pool so a slow node never
stalls other connections. Inputs may be views of other nodes' memory: treat them as read-only.
Loading problems are ConfigErrors naming the library; this module knows no HTTP.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fastserve.errors import ConfigError, FastServeError, InvalidInput
from fastserve.pipelines.config import LibraryConfig
from fastserve.v2.datatypes import BY_NAME, BYTES
from fastserve.v2.types import TensorSpec
from fastserve.v2.validate import check_shape

# Threads for custom nodes that are not RUN_INLINE: numpy releases the GIL in its heavy loops,
# so up to the core count can overlap; more would only contend (the CI machine has 2 cores).
CUSTOM_THREADS = max(2, min(8, os.cpu_count() or 2))
REQUIRED = ("inputs_info", "outputs_info", "execute")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_running = 0
# Imported files by (path, mtime, size): a config reload re-imports only a changed file.
_file_cache: dict[tuple[str, int, int], ModuleType] = {}


class CustomLibrary:
    """One loaded library: its functions and how execute() runs."""

    __slots__ = ("name", "source", "execute", "inputs_info", "outputs_info", "inline")

    def __init__(self, name: str, source: str, module: ModuleType) -> None:
        self.name = name
        self.source = source
        self.execute: Callable[[dict[str, np.ndarray], dict[str, str]], dict[str, Any]] = module.execute
        self.inputs_info: Callable[[dict[str, str]], Any] = module.inputs_info
        self.outputs_info: Callable[[dict[str, str]], Any] = module.outputs_info
        self.inline = bool(getattr(module, "RUN_INLINE", False))

    def specs(self, which: str, params: dict[str, str], where: str) -> dict[str, TensorSpec]:
        """inputs_info or outputs_info as TensorSpecs (index: declaration order)."""
        function = self.inputs_info if which == "inputs" else self.outputs_info
        try:
            declared = function(dict(params))
        except Exception as exc:
            raise ConfigError(f"{where}: library {self.name!r}: {which}_info failed: {exc!r}") from None
        if not isinstance(declared, dict) or not declared:
            raise ConfigError(f"{where}: library {self.name!r}: {which}_info must return a non-empty dict "
                              "{name: (datatype, shape)}")
        specs: dict[str, TensorSpec] = {}
        for index, (name, entry) in enumerate(declared.items()):
            specs[name] = _spec(name, entry, index, f"{where}: library {self.name!r}: {which}_info {name!r}")
        return specs


def load_library(config: LibraryConfig, where: str) -> CustomLibrary:
    """Import the library's module; ConfigError when it cannot be imported or lacks a function."""
    try:
        if config.base_path.endswith(".py") or os.sep in config.base_path:
            module = _import_file(Path(config.base_path))
        else:
            module = importlib.import_module(config.base_path)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{where}: custom node library {config.name!r} ({config.base_path}) cannot be imported: "
                          f"{exc!r}") from None
    missing = [f for f in REQUIRED if not callable(getattr(module, f, None))]
    if missing:
        raise ConfigError(f"{where}: custom node library {config.name!r} ({config.base_path}) has no function "
                          f"{', '.join(missing)} (see docs/pipelines.md)")
    return CustomLibrary(config.name, config.base_path, module)


def _import_file(path: Path) -> ModuleType:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    module = _file_cache.get(key)
    if module is not None:
        return module
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"fastserve_custom_{path.stem}_{digest}_{stat.st_mtime_ns}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the module look themselves up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _file_cache[key] = module
    return module


def _spec(name: str, entry: Any, index: int, where: str) -> TensorSpec:
    if not isinstance(entry, tuple | list) or len(entry) != 2:
        raise ConfigError(f"{where}: must be (datatype, shape)")
    datatype_name, shape = entry
    datatype = BY_NAME.get(datatype_name) if isinstance(datatype_name, str) else None
    if datatype is None:
        raise ConfigError(f"{where}: unknown datatype {datatype_name!r} (one of {', '.join(BY_NAME)})")
    dims = None
    if shape is not None:
        if not isinstance(shape, tuple | list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise ConfigError(f"{where}: shape must be a list of ints (-1 for any size) or None for any rank")
        dims = tuple((d, d) if d >= 0 else (0, -1) for d in shape)
    return TensorSpec(name=name, datatype=datatype, type_name=datatype.ov_name, dims=dims, index=index)


def executor() -> ThreadPoolExecutor:
    """The shared pool for custom nodes that do not run inline (created on first use)."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(CUSTOM_THREADS, thread_name_prefix="fastserve-custom")
    return _executor


def execute_counted(execute: Callable[..., Any], inputs: dict[str, np.ndarray], params: dict[str, str]) -> Any:
    """execute() on a pool thread, counted: a node still running at exit must not hold the process."""
    global _running
    with _executor_lock:
        _running += 1
    try:
        return execute(inputs, params)
    finally:
        with _executor_lock:
            _running -= 1


def running() -> int:
    """Custom node calls running on pool threads now (the server exits without joining them)."""
    return _running


def check_outputs(library: CustomLibrary | None, names: list[str], specs: list[TensorSpec], returned: Any
                  ) -> list[Any]:
    """execute()'s result (or exception) -> the outputs the pipeline uses, checked against outputs_info."""
    if isinstance(returned, FastServeError):
        raise returned
    if isinstance(returned, BaseException):
        raise FastServeError(f"custom node library {library.name if library else '?'} failed: {returned!r}")
    if not isinstance(returned, dict):
        raise FastServeError(f"execute() returned {type(returned).__name__}, not a dict of arrays")
    outputs = []
    for name, spec in zip(names, specs, strict=True):
        if name not in returned:
            raise FastServeError(f"execute() returned no output {name!r} (it returned: {', '.join(returned)})")
        array = np.asarray(returned[name])
        datatype = spec.datatype
        assert datatype is not None
        if datatype is BYTES:
            if array.dtype.kind not in "OSU":
                raise FastServeError(f"output {name!r} is {array.dtype}, declared BYTES")
            array = array.astype(object) if array.dtype.kind != "O" else array
        elif array.dtype != datatype.numpy:
            raise FastServeError(f"output {name!r} is {array.dtype}, declared {datatype.name} ({datatype.numpy})")
        try:
            check_shape(array.shape, spec)
        except InvalidInput as exc:
            raise FastServeError(f"output {name!r} does not fit outputs_info: {exc.message}") from None
        outputs.append(array)
    return outputs
