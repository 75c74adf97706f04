"""OVMS's input preprocessing options (`mean`, `scale`, `color_format`, `precision`): syntax only.

Rules: turns what a user wrote (CLI flag or config.json field) into normalized values for
ModelSettings, or a ConfigError naming the field. No OpenVINO here (the CLI imports this before
any model is read); fastserve/models/preprocess.py builds them into the model.

OVMS syntax (src/modelconfig.cpp, src/*_configuration.cpp, docs/parameters.md):
- mean / scale: one number ("127.5") or one per channel ("[123.675,116.28,103.53]", or in
  parentheses). OVMS takes only strings; a JSON number or list means the same here.
- color_format: "<model's format>:<format the client sends>", e.g. "BGR:RGB" (OVMS converts
  from the second to the first), formats RGB, BGR, GRAY, NV12, NV12_2, I420, I420_3.
- precision: "<datatype the client sends>:<model's datatype>", e.g. "UINT8:FP32".
Names are case-insensitive, as in OVMS.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastserve.errors import ConfigError

COLOR_FORMATS = ("RGB", "BGR", "GRAY", "NV12", "NV12_2", "I420", "I420_3")
# OVMS's precision names. INT4, UINT4 and UINT1 are OVMS names too, but KServe has no datatype a
# client could send them as, so they are refused here instead of failing at the first request.
PRECISIONS = ("BF16", "FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8",
              "UINT64", "UINT32", "UINT16", "UINT8")
NO_KSERVE_TYPE = ("INT4", "UINT4", "UINT1")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")

FloatValues = float | tuple[float, ...]


def parse_values(value: Any, where: str, *, nonzero: bool = False) -> FloatValues | None:
    """mean or scale: one float, or a tuple of per-channel floats; None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: must be a number or a list of numbers per channel, not {value!r}")
    if isinstance(value, int | float):
        values: list[Any] = [value]
        single = True
    elif isinstance(value, list):
        values, single = value, False
    elif isinstance(value, str):
        text = re.sub(r"\s+", "", value)
        single = (text[:1], text[-1:]) not in (("[", "]"), ("(", ")"))
        values = [text] if single else text[1:-1].split(",")
    else:
        values, single = [value], True
    parsed = []
    for item in values:
        number = _number(item)
        if number is None:
            raise ConfigError(
                f"{where}: {value!r} is not a number or a per-channel list such as \"[123.675,116.28,103.53]\""
            )
        if nonzero and number == 0:
            raise ConfigError(f"{where}: {value!r}: the input is divided by scale, so no value may be 0")
        parsed.append(number)
    if not parsed:
        raise ConfigError(f"{where}: {value!r}: the list is empty")
    return parsed[0] if single else tuple(parsed)


def parse_color_format(value: Any, where: str) -> str | None:
    """"BGR:RGB" -> "BGR:RGB" (model's format : the client's); None when unset."""
    return _pair(value, where, COLOR_FORMATS, "color_format", '"BGR:RGB" (model\'s format : the format sent)')


def parse_precision(value: Any, where: str) -> str | None:
    """"uint8:fp32" -> "UINT8:FP32" (datatype sent : model's datatype); None when unset."""
    if isinstance(value, str):
        for name in value.upper().split(":"):
            if name.strip() in NO_KSERVE_TYPE:
                raise ConfigError(f"{where}: {value!r}: {name.strip()} has no KServe datatype a client could send")
    return _pair(value, where, PRECISIONS, "precision", '"UINT8:FP32" (datatype sent : model\'s datatype)')


def describe(values: FloatValues) -> str:
    """For messages and logs: 127.5 or [123.675,116.28,103.53]."""
    if isinstance(values, tuple):
        return "[" + ",".join(f"{v:g}" for v in values) + "]"
    return f"{values:g}"


def _pair(value: Any, where: str, names: tuple[str, ...], what: str, example: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string like {example}, not {value!r}")
    parts = [part.strip().upper() for part in value.split(":")]
    if len(parts) != 2:
        raise ConfigError(f"{where}: {value!r} must be two {what} names joined by ':', like {example}")
    for part in parts:
        if part not in names:
            raise ConfigError(f"{where}: {value!r}: unknown {what} {part!r} (known: {', '.join(names)})")
    return ":".join(parts)


def _number(item: Any) -> float | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float):
        number = float(item)
    elif isinstance(item, str) and _NUMBER.match(item):
        number = float(item)
    else:
        return None
    return number if math.isfinite(number) else None
