"""Turns ModelSettings into compiled Servables: finds version folders, reads, reshapes, compiles.

Rules: OVMS semantics for the folder layout (base_path/<version>/model.xml|.onnx, or
base_path pointing at one model file, served as version 1), shape/batch_size/layout, and the
plugin_config default (PERFORMANCE_HINT=LATENCY unless NUM_STREAMS or PERFORMANCE_HINT is
given). Problems a user can fix in the config are ConfigErrors naming the path.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import openvino as ov

from fastserve.errors import ConfigError
from fastserve.models.servable import Servable
from fastserve.settings import ModelSettings

log = logging.getLogger("fastserve.models")
MODEL_SUFFIXES = (".xml", ".onnx")


def find_versions(settings: ModelSettings) -> dict[int, Path]:
    """Every version on disk with its model file (not yet filtered by the version policy)."""
    base = settings.base_path
    if base.is_file():
        if base.suffix not in MODEL_SUFFIXES:
            raise ConfigError(f"model {settings.name}: {base} is not an OpenVINO IR (.xml) or ONNX (.onnx) file")
        return {1: base}
    if not base.is_dir():
        raise ConfigError(f"model {settings.name}: base_path {base} does not exist")
    found: dict[int, Path] = {}
    for entry in base.iterdir():
        if not entry.is_dir() or not entry.name.isdigit() or int(entry.name) <= 0:
            continue
        model_file = model_file_in(entry)
        if model_file is not None:
            found[int(entry.name)] = model_file
    return found


def model_file_in(folder: Path) -> Path | None:
    """model.xml or model.onnx, else the single .xml/.onnx file in the folder."""
    for name in ("model.xml", "model.onnx"):
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES and p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    return None


def select_versions(settings: ModelSettings) -> dict[int, Path]:
    """The versions to serve under the policy; a ConfigError when there are none."""
    on_disk = find_versions(settings)
    chosen = settings.version_policy.select(list(on_disk))
    if not chosen:
        if not on_disk:
            raise ConfigError(
                f"model {settings.name}: no version folder with a model file under {settings.base_path} "
                f"(expected {settings.base_path}/<version>/model.xml or model.onnx)"
            )
        raise ConfigError(
            f"model {settings.name}: version policy {settings.version_policy.describe()} matches none of the "
            f"versions on disk {sorted(on_disk)}"
        )
    return {v: on_disk[v] for v in chosen}


def plugin_config(settings: ModelSettings) -> dict[str, Any]:
    config: dict[str, Any] = {key: _property_value(value) for key, value in settings.plugin_config.items()}
    if "PERFORMANCE_HINT" not in config and "NUM_STREAMS" not in config:
        # OVMS injects LATENCY too: one request at a time gets all cores, the right default for serving.
        config["PERFORMANCE_HINT"] = "LATENCY"
    return config


def _property_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return str(value) if isinstance(value, int | float) else value


def load_version(core: ov.Core, settings: ModelSettings, version: int, model_file: Path) -> Servable:
    """Read, reshape and compile one version; RuntimeErrors from OpenVINO become ConfigErrors."""
    try:
        model = core.read_model(str(model_file))
    except RuntimeError as exc:
        raise ConfigError(f"model {settings.name} version {version}: cannot read {model_file}: {_first(exc)}") from None
    apply_layout(model, settings)
    apply_shape(model, settings)
    try:
        compiled = core.compile_model(model, settings.target_device, plugin_config(settings))
    except RuntimeError as exc:
        raise ConfigError(
            f"model {settings.name} version {version}: cannot compile for {settings.target_device}: {_first(exc)}"
        ) from None
    return Servable(settings.name, version, compiled, settings.nireq, settings.execution_mode)


def apply_layout(model: ov.Model, settings: ModelSettings) -> None:
    """`layout`: "NHWC" names the inputs' layout; "NHWC:NCHW" also transposes (request layout : model layout)."""
    if not settings.layout:
        return
    per_input = settings.layout if isinstance(settings.layout, dict) else {p.get_any_name(): settings.layout
                                                                            for p in model.inputs}
    ppp = ov.preprocess.PrePostProcessor(model)
    for name, text in per_input.items():
        try:
            info = ppp.input(name)
        except RuntimeError:
            raise ConfigError(f"model {settings.name}: layout names unknown input {name!r}") from None
        tensor_layout, _, model_layout = text.partition(":")
        try:
            info.tensor().set_layout(ov.Layout(tensor_layout))
            info.model().set_layout(ov.Layout(model_layout or tensor_layout))
        except RuntimeError:
            raise ConfigError(f"model {settings.name}: layout {text!r} of input {name} is not valid") from None
    try:
        ppp.build()
    except RuntimeError as exc:
        raise ConfigError(f"model {settings.name}: layout cannot be applied: {_first(exc)}") from None


def apply_shape(model: ov.Model, settings: ModelSettings) -> None:
    """`shape` (all inputs or per input) takes precedence over `batch_size`, as in OVMS."""
    shapes: dict[str, ov.PartialShape] = {}
    names = [port.get_any_name() for port in model.inputs]
    if settings.shape is not None:
        per_input = settings.shape if isinstance(settings.shape, dict) else dict.fromkeys(names, settings.shape)
        for name, text in per_input.items():
            if name not in names:
                raise ConfigError(f"model {settings.name}: shape names unknown input {name!r}")
            port = model.input(name)
            shapes[name] = _dynamic_like(port) if text == "auto" else parse_partial_shape(text)
    elif settings.batch_size is not None:
        for port in model.inputs:
            shape = port.get_partial_shape()
            if shape.rank.is_dynamic or len(shape) == 0:
                continue
            position = _batch_position(port)
            dims = list(shape)
            dims[position] = ov.Dimension() if settings.batch_size == "auto" else ov.Dimension(int(settings.batch_size))
            shapes[port.get_any_name()] = ov.PartialShape(dims)
    if shapes:
        try:
            model.reshape(shapes)
        except RuntimeError as exc:
            raise ConfigError(f"model {settings.name}: cannot reshape to {settings.shape or settings.batch_size}: "
                              f"{_first(exc)}") from None


def parse_partial_shape(text: str) -> ov.PartialShape:
    dims = []
    for item in re.findall(r"-?\d+(?::\d+)?", text):
        if ":" in item:
            low, high = item.split(":")
            dims.append(ov.Dimension(int(low), int(high)))
        else:
            dims.append(ov.Dimension() if int(item) == -1 else ov.Dimension(int(item)))
    return ov.PartialShape(dims)


def _dynamic_like(port: Any) -> ov.PartialShape:
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return shape
    return ov.PartialShape([ov.Dimension() for _ in range(len(shape))])


def _batch_position(port: Any) -> int:
    try:
        layout = ov.layout_helpers.get_layout(port)
        if ov.layout_helpers.has_batch(layout):
            return int(ov.layout_helpers.batch_idx(layout)) % len(port.get_partial_shape())
    except (RuntimeError, AttributeError):
        pass
    return 0


def _first(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__
