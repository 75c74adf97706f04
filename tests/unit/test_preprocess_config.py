"""OVMS's preprocessing options as written (CLI flag or config.json field) -> ModelSettings, and the errors.

What they compute is tested end to end in tests/e2e/test_preprocessing.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastserve.config import model_from_dict, model_from_flags
from fastserve.errors import ConfigError

WHERE = "cfg.json: model_config_list[0].config"


def settings(tmp_path: Path, **fields: Any) -> Any:
    return model_from_dict({"name": "m", "base_path": str(tmp_path), **fields}, tmp_path, WHERE)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"mean": "[123.675,116.28,103.53]"}, {"mean": (123.675, 116.28, 103.53)}),
    ({"mean": "( 1, 2.5 ,3e1 )"}, {"mean": (1.0, 2.5, 30.0)}),
    ({"mean": "127.5", "scale": "-2"}, {"mean": 127.5, "scale": -2.0}),
    ({"mean": [1, 2, 3], "scale": 58}, {"mean": (1.0, 2.0, 3.0), "scale": 58.0}),  # JSON values too
    ({"color_format": "bgr:rgb"}, {"color_format": "BGR:RGB"}),
    ({"color_format": "GRAY:NV12_2"}, {"color_format": "GRAY:NV12_2"}),
    ({"precision": "uint8:fp32"}, {"precision": "UINT8:FP32"}),
    ({"precision": "FP16:BF16"}, {"precision": "FP16:BF16"}),
    ({}, {"mean": None, "scale": None, "color_format": None, "precision": None}),
])
def test_ovms_syntax_is_normalized(tmp_path: Path, fields: dict, expected: dict) -> None:
    model = settings(tmp_path, **fields)
    assert {key: getattr(model, key) for key in expected} == expected


@pytest.mark.parametrize(("fields", "message"), [
    ({"mean": "abc"}, "mean: 'abc' is not a number or a per-channel list"),
    ({"mean": "[1,,2]"}, "mean: '[1,,2]' is not a number"),
    ({"mean": "[]"}, "mean: '[]' is not a number"),
    ({"mean": "[1,2,3"}, "mean: '[1,2,3' is not a number"),
    ({"mean": "nan"}, "mean: 'nan' is not a number"),
    ({"mean": True}, "mean: must be a number or a list of numbers"),
    ({"scale": "0"}, "scale: '0': the input is divided by scale, so no value may be 0"),
    ({"scale": "[1,0,1]"}, "scale: '[1,0,1]': the input is divided by scale"),
    ({"color_format": "BGR"}, "color_format: 'BGR' must be two color_format names joined by ':'"),
    ({"color_format": "BGR:XYZ"}, "color_format: 'BGR:XYZ': unknown color_format 'XYZ' (known: RGB, BGR, GRAY"),
    ({"color_format": 3}, "color_format: must be a string like"),
    ({"precision": "fp32"}, "precision: 'fp32' must be two precision names joined by ':'"),
    ({"precision": "uint4:fp32"}, "precision: 'uint4:fp32': UINT4 has no KServe datatype"),
    ({"precision": "u8:fp32"}, "precision: 'u8:fp32': unknown precision 'U8'"),
])
def test_bad_values_name_the_field(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, **fields)
    assert str(info.value).startswith(f"{WHERE}.{message}"), str(info.value)


def test_flags_take_the_same_syntax(tmp_path: Path) -> None:
    model = model_from_flags("m", str(tmp_path), layout="NHWC:NCHW", preprocess={
        "mean": "[1,2,3]", "scale": "2", "color_format": "BGR:RGB", "precision": "UINT8:FP32"})
    assert (model.mean, model.scale, model.color_format, model.precision) == ((1, 2, 3), 2, "BGR:RGB", "UINT8:FP32")
    with pytest.raises(ConfigError, match=r"^--scale: '0': the input is divided by scale"):
        model_from_flags("m", str(tmp_path), preprocess={"scale": "0"})
