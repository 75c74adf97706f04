"""Builds OVMS's preprocessing options into the model with OpenVINO's PrePostProcessor.

Rules: the steps become part of the compiled graph, so a request pays nothing in Python and
the model's inputs (hence the metadata) show what the client must send: the `precision`
datatype, the `layout` and `color_format` shape. The order is OVMS's (src/modelinstance.cpp
applyPreprocessingConfiguration): color conversion, then the element type, then mean, then
scale, so `(x - mean) / scale` is computed on the converted values; the transposition of
`layout` comes last (PrePostProcessor adds it after the explicit steps). As in OVMS they apply
to the model's one input: a model with several inputs is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from fastserve.errors import ConfigError
from fastserve.preprocess_config import describe
from fastserve.settings import ModelSettings

_COLOR = {
    "RGB": ColorFormat.RGB,
    "BGR": ColorFormat.BGR,
    "GRAY": ColorFormat.GRAY,
    "NV12": ColorFormat.NV12_SINGLE_PLANE,
    "NV12_2": ColorFormat.NV12_TWO_PLANES,
    "I420": ColorFormat.I420_SINGLE_PLANE,
    "I420_3": ColorFormat.I420_THREE_PLANES,
}
# Multi-plane formats make one input per plane, named <input>/y, <input>/uv (OpenVINO's naming).
_PLANES = {"NV12_2": ["y", "uv"], "I420_3": ["y", "u", "v"]}
_TYPES = {
    "BF16": ov.Type.bf16, "FP64": ov.Type.f64, "FP32": ov.Type.f32, "FP16": ov.Type.f16,
    "INT64": ov.Type.i64, "INT32": ov.Type.i32, "INT16": ov.Type.i16, "INT8": ov.Type.i8,
    "UINT64": ov.Type.u64, "UINT32": ov.Type.u32, "UINT16": ov.Type.u16, "UINT8": ov.Type.u8,
}
KEYS = ("color_format", "precision", "mean", "scale")


def requested(settings: ModelSettings) -> list[str]:
    """The preprocessing keys this model sets."""
    return [key for key in KEYS if getattr(settings, key) is not None]


def add_preprocessing(ppp: PrePostProcessor, model: ov.Model, settings: ModelSettings) -> None:
    """Add the steps to `ppp` (which may already carry the layout); ConfigError names the fields."""
    keys = requested(settings)
    if not keys:
        return
    fields = ", ".join(settings.where(key) for key in keys)
    if len(model.inputs) != 1:
        names = ", ".join(port.get_any_name() for port in model.inputs)
        raise ConfigError(f"{fields}: model {settings.name} has {len(model.inputs)} inputs ({names}); "
                          "mean, scale, color_format and precision apply to a model with one input, as in OVMS")
    info = ppp.input()
    try:
        if settings.color_format is not None:
            model_format, sent_format = settings.color_format.split(":")
            info.tensor().set_color_format(_COLOR[sent_format], _PLANES.get(sent_format, []))
            info.preprocess().convert_color(_COLOR[model_format])
        if settings.precision is not None:
            sent_type, model_type = settings.precision.split(":")
            info.tensor().set_element_type(_TYPES[sent_type])
            info.preprocess().convert_element_type(_TYPES[model_type])
        _values(info.preprocess().mean, settings.mean)
        _values(info.preprocess().scale, settings.scale)
    except RuntimeError as exc:
        raise ConfigError(f"{fields}: model {settings.name}: {explain(settings, exc)}") from None


def build_error(settings: ModelSettings, exc: RuntimeError) -> str | None:
    """A build failure caused by the preprocessing options, worded for the user; None if they are unset."""
    keys = requested(settings)
    if not keys:
        return None
    fields = ", ".join(settings.where(key) for key in keys)
    return f"{fields}: model {settings.name}: {_summary(settings)} cannot be applied: {explain(settings, exc)}"


def explain(settings: ModelSettings, exc: BaseException) -> str:
    message = _last_line(exc)
    if not settings.layout and ("layout" in message.lower() or "channels" in message.lower()
                                or "not aligned" in message):
        message += f" (set {settings.where('layout')}, e.g. \"NHWC:NCHW\", so the channel dimension is known)"
    return message


def _values(step: Any, values: float | tuple[float, ...] | None) -> None:
    if values is None:
        return
    step(list(values) if isinstance(values, tuple) else float(values))


def _summary(settings: ModelSettings) -> str:
    parts = []
    for key in KEYS:
        value = getattr(settings, key)
        if value is not None:
            parts.append(f"{key} {value if isinstance(value, str) else describe(value)}")
    return ", ".join(parts)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__
