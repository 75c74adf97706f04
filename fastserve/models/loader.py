"""Turns ModelSettings into compiled Servables: finds version folders, reads, reshapes, compiles.

Rules: OVMS semantics for the folder layout (base_path/<version>/model.xml|.onnx, or
base_path pointing at one model file, served as version 1), shape/batch_size/layout, and the
plugin_config default (PERFORMANCE_HINT=LATENCY unless NUM_STREAMS or PERFORMANCE_HINT is
given). Every problem a user can fix is a ConfigError naming the config field (or flag) and
the model; nothing here knows HTTP. Each call compiles one version: the caller decides when.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from fastserve.errors import ConfigError
from fastserve.models.batching import enable_batching, triton_max_batch_size
from fastserve.models.preprocess import add_preprocessing, build_error, requested
from fastserve.models.servable import Servable
from fastserve.models.slots import fully_static, one_thread_hides_failures
from fastserve.settings import ModelSettings

log = logging.getLogger("fastserve.models")
MODEL_SUFFIXES = (".xml", ".onnx")
MODEL_FILES = ("model.xml", "model.onnx")


def find_versions(settings: ModelSettings) -> dict[int, Path]:
    """Every version on disk with its model file (not yet filtered by the version policy)."""
    base = settings.base_path
    where = settings.where("base_path")
    if settings.remote:  # s3://...: mirror the versions the policy serves into base_path first
        from fastserve.storage.mirror import sync_model

        sync_model(settings)
    if base.is_file():
        if base.suffix not in MODEL_SUFFIXES:
            raise ConfigError(f"{where}: {base} is not an OpenVINO IR (.xml) or ONNX (.onnx) file")
        return {1: base}
    if not base.is_dir():
        raise ConfigError(f"{where}: {base} does not exist")
    found: dict[int, Path] = {}
    for entry in sorted(base.iterdir()):
        # OVMS ignores anything that is not a positive integer folder name.
        if not entry.is_dir() or not entry.name.isdigit() or int(entry.name) <= 0:
            continue
        version = int(entry.name)
        if version in found:
            raise ConfigError(f"{where}: {entry} and {found[version].parent} are both version {version}")
        model_file = model_file_in(entry)
        if model_file is None:
            log.warning("model %s: version folder %s has no single model.xml or model.onnx; skipped",
                        settings.name, entry)
            continue
        found[version] = model_file
    return found


def model_file_in(folder: Path) -> Path | None:
    """model.xml or model.onnx, else the only .xml/.onnx file in the folder."""
    for name in MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES and p.is_file())
    return candidates[0] if len(candidates) == 1 else None


def select_versions(settings: ModelSettings) -> dict[int, Path]:
    """The versions to serve under the policy; a ConfigError when there are none."""
    on_disk = find_versions(settings)
    if not on_disk:
        raise ConfigError(
            f"{settings.where('base_path')}: model {settings.name}: no version folder with a model file in "
            f"{settings.remote or settings.base_path} (expected {settings.remote or settings.base_path}/<version>/"
            "model.xml or model.onnx)"
        )
    policy = settings.version_policy
    chosen = policy.select(list(on_disk))
    if not chosen:
        raise ConfigError(
            f"{settings.where('model_version_policy')}: model {settings.name}: {policy.describe()} matches none "
            f"of the versions on disk {sorted(on_disk)}"
        )
    if policy.kind == "specific" and len(chosen) < len(policy.versions):
        missing = sorted(set(policy.versions) - set(chosen))
        log.warning("model %s: versions %s of the policy are not on disk; serving %s", settings.name, missing, chosen)
    return {v: on_disk[v] for v in chosen}


# Models with fewer weight bytes than this also try one inference thread (see _single_threaded);
# ResNet-50 has ~100 MB, the demo models ~15 KB, a 3-layer 512-wide MLP ~3 MB.
ONE_THREAD_MAX_WEIGHT_BYTES = 8 << 20


def plugin_config(settings: ModelSettings) -> dict[str, Any]:
    config: dict[str, Any] = {key: _property_value(value) for key, value in settings.plugin_config.items()}
    if "PERFORMANCE_HINT" not in config and "NUM_STREAMS" not in config:
        # OVMS injects LATENCY too: one request at a time gets all cores, the right default for serving.
        config["PERFORMANCE_HINT"] = "LATENCY"
    return config


def _property_value(value: Any) -> Any:
    # OpenVINO parses every property from its string form; bools are YES/NO there.
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return str(value) if isinstance(value, int | float) else value


def read_model(core: ov.Core, model_file: Path) -> ov.Model:
    """Read an IR or ONNX file; an IR whose .bin is empty (a model without weights) reads without it."""
    weights = model_file.with_suffix(".bin")
    if model_file.suffix == ".xml" and weights.is_file() and weights.stat().st_size == 0:
        # Some OpenVINO releases fail to map a zero-byte file; a weights-free IR needs no weights at all.
        return core.read_model(model_file.read_text(), ov.Tensor(np.empty(0, dtype=np.uint8)))
    return core.read_model(str(model_file))


def load_version(core: ov.Core, settings: ModelSettings, version: int, model_file: Path) -> Servable:
    """Read, reshape and compile one version; OpenVINO's errors become ConfigErrors naming the model."""
    what = f"model {settings.name} version {version}"
    try:
        model = read_model(core, model_file)
    except (RuntimeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read {model_file}: {_first(exc)}") from None
    apply_layout(model, settings)
    apply_shape(model, settings)
    config = plugin_config(settings)
    try:
        compiled = core.compile_model(model, settings.target_device, config)
    except RuntimeError as exc:
        raise ConfigError(
            f"{what}: cannot compile {model_file} for {settings.target_device} with {config} "
            f"({settings.where('target_device')}, {settings.where('plugin_config')}): {_first(exc)}"
        ) from None
    try:
        static = fully_static(model)
        servable = Servable(settings.name, version, compiled, settings.nireq, settings.execution_mode, static)
        if _wants_one_thread(model, servable, settings):
            servable = _single_threaded(core, model, settings, version, config, servable)
    except RuntimeError as exc:
        raise ConfigError(f"{what}: cannot create infer requests (nireq {settings.nireq}): {_first(exc)}") from None
    enable_batching(servable, settings)  # max_batch_size > 0: a Batcher in front of servable.infer
    servable.stats.batched = triton_max_batch_size(servable, settings) > 0  # counts rows, as Triton's config says
    return servable


def _wants_one_thread(model: ov.Model, servable: Servable, settings: ModelSettings) -> bool:
    """A small model on CPU, not pinned to async, with no threading chosen by the user.

    Small by its weights, not by the warm-up time: on a loaded machine a two-thread warm-up of
    a 20 us model can take milliseconds (the second thread waits for a core), which is exactly
    the case one thread cures.
    """
    chosen = {"INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "ENABLE_HYPER_THREADING"}
    return (
        servable.probe_us is not None
        and settings.execution_mode != "async"
        and settings.target_device == "CPU"
        and not chosen & set(settings.plugin_config)
        and _weight_bytes(model) < ONE_THREAD_MAX_WEIGHT_BYTES
        # Where one thread hides failed inferences (and then hands out stale outputs) it is only safe on
        # a model that cannot fail at run time: every shape static, so no shape is computed per request.
        and (servable.static or not one_thread_hides_failures())
    )



def _weight_bytes(model: ov.Model) -> int:
    return sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant")


def _single_threaded(
    core: ov.Core, model: ov.Model, settings: ModelSettings, version: int, config: dict[str, Any], first: Servable
) -> Servable:
    """Recompile with one inference thread; keep it when its warm-up is not slower than the first's.

    Measured on the 2-core VM (a + b and a * b, [-1,4] FP32, inline): LATENCY's two threads took
    31.5 us wall but 62.8 us of CPU per inference (the second thread wakes for nothing), one
    thread 26.2 us wall and 26.2 us CPU: the event loop gets that core back for HTTP and JSON.
    """
    # Unpinned: the loop thread sleeps while OpenVINO's stream thread computes, so that thread
    # should take whichever core is free (often the loop's own) rather than wait for its pinned
    # core; with wrk on the same 2 cores, add JSON at 32 connections went ~4.2k -> ~5.1k req/s.
    one_thread = {**config, "INFERENCE_NUM_THREADS": 1, "ENABLE_CPU_PINNING": False}
    compiled = core.compile_model(model, settings.target_device, one_thread)
    alone = Servable(settings.name, version, compiled, settings.nireq, settings.execution_mode, fully_static(model))
    if alone.probe_us is not None and first.probe_us is not None and alone.probe_us <= first.probe_us * 1.2:
        return alone
    return first


def apply_layout(model: ov.Model, settings: ModelSettings) -> None:
    """`layout`: "NHWC" names the inputs' layout; "NHWC:NCHW" also transposes (request layout : model layout).

    OVMS's mean/scale/color_format/precision go into the same PrePostProcessor (models/preprocess.py).
    """
    if not settings.layout and not requested(settings):
        return
    where = settings.where("layout")
    if isinstance(settings.layout, dict):
        per_input = settings.layout
    else:
        per_input = {port.get_any_name(): settings.layout for port in model.inputs} if settings.layout else {}
    ppp = ov.preprocess.PrePostProcessor(model)
    for name, text in per_input.items():
        try:
            info = ppp.input(name)
        except RuntimeError:
            raise ConfigError(f"{where}: model {settings.name} has no input {name!r}") from None
        tensor_layout, _, model_layout = text.partition(":")
        try:
            info.tensor().set_layout(ov.Layout(tensor_layout))
            info.model().set_layout(ov.Layout(model_layout or tensor_layout))
        except RuntimeError:
            raise ConfigError(f"{where}: {text!r} is not a valid layout for input {name}") from None
    add_preprocessing(ppp, model, settings)
    try:
        ppp.build()
    except RuntimeError as exc:
        message = build_error(settings, exc)
        if message is not None:
            raise ConfigError(message) from None
        raise ConfigError(f"{where}: model {settings.name}: the layout cannot be applied: {_first(exc)}") from None


def apply_shape(model: ov.Model, settings: ModelSettings) -> None:
    """`shape` (all inputs or per input) takes precedence over `batch_size`, as in OVMS."""
    shapes: dict[str, ov.PartialShape] = {}
    names = [port.get_any_name() for port in model.inputs]
    if settings.shape is not None:
        where = settings.where("shape")
        per_input = settings.shape if isinstance(settings.shape, dict) else dict.fromkeys(names, settings.shape)
        for name, text in per_input.items():
            if name not in names:
                raise ConfigError(f"{where}: model {settings.name} has no input {name!r} (inputs: {', '.join(names)})")
            current = model.input(name).get_partial_shape()
            if text == "auto":
                shapes[name] = _dynamic_like(current)
                continue
            wanted = parse_partial_shape(text)
            if current.rank.is_static and len(wanted) != len(current):
                raise ConfigError(f"{where}: {text} has {len(wanted)} dims, but input {name} of model "
                                  f"{settings.name} has {len(current)}: {current}")
            shapes[name] = wanted
    elif settings.batch_size is not None:
        where = settings.where("batch_size")
        for port in model.inputs:
            shape = port.get_partial_shape()
            if shape.rank.is_dynamic or len(shape) == 0:
                continue  # no batch dimension to set
            dims = list(shape)
            dims[_batch_position(port)] = (ov.Dimension() if settings.batch_size == "auto"
                                           else ov.Dimension(int(settings.batch_size)))
            shapes[port.get_any_name()] = ov.PartialShape(dims)
    else:
        return
    if shapes:
        try:
            model.reshape(shapes)
        except RuntimeError as exc:
            value = settings.shape if settings.shape is not None else settings.batch_size
            raise ConfigError(f"{where}: model {settings.name} cannot be reshaped to {value}: {_first(exc)}") from None


def parse_partial_shape(text: str) -> ov.PartialShape:
    """"(1,-1,2:8)" -> PartialShape; config.parse_shape has already checked the syntax."""
    dims = []
    for item in re.findall(r"-?\d+(?::\d+)?", text):
        if ":" in item:
            low, high = item.split(":")
            dims.append(ov.Dimension(int(low), int(high)))
        else:
            dims.append(ov.Dimension() if int(item) == -1 else ov.Dimension(int(item)))
    return ov.PartialShape(dims)


def _dynamic_like(shape: ov.PartialShape) -> ov.PartialShape:
    if shape.rank.is_dynamic:
        return shape
    return ov.PartialShape([ov.Dimension() for _ in range(len(shape))])


def _batch_position(port: Any) -> int:
    """Where N is in the input's layout; the first dim when the layout does not say (OVMS's N...)."""
    try:
        layout = ov.layout_helpers.get_layout(port)
        if ov.layout_helpers.has_batch(layout):
            return int(ov.layout_helpers.batch_idx(layout)) % len(port.get_partial_shape())
    except (RuntimeError, AttributeError):
        pass
    return 0


def _first(exc: BaseException) -> str:
    """OpenVINO's messages carry a stack of source locations; keep the last meaningful line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__
