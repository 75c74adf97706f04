"""Batching on by default where it pays: a real server, real OpenVINO models built here.

The load-time decision itself rests on measured costs (tests/unit/test_batcher.py tests it with
controlled costs), so these tests never assume which way it went for `default`: they check that
it is stated (log line and Triton's /config agree), that `max_batch_size` 0 forces batching off
and N forces it on, and that batched answers are exactly the unbatched ones.

Model ``echo4``: ``x`` FP32 [-1,4] -> ``y`` = 2x and ``n`` INT32 [N] (every element the
inference's row count N), so each answer shows the batch it ran in.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest

from tests.e2e.test_batching import call_all, distinct_input
from tests.modelzoo import add_model, save
from tests.serverproc import ServerProcess

FORCED = 16


def echo4_model() -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    rows = ops.gather(ops.shape_of(x, "i64"), ops.constant(np.array([0], np.int64)), ops.constant(np.int64(0)))
    y = ops.multiply(x, ops.constant(np.float32(2)))
    y.output(0).get_tensor().set_names({"y"})
    n = ops.broadcast(ops.convert(rows, "i32"), rows)
    n.output(0).get_tensor().set_names({"n"})
    return ov.Model([y.output(0), n.output(0)], [x], "echo4")


def column_sum_model() -> ov.Model:
    """x FP32 [-1,4] -> y FP32 [4], the sum over the rows: dim 0 dynamic, but the output does not follow it."""
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.reduce_sum(x, ops.constant(np.array([0], np.int64)), keep_dims=False)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y.output(0)], [x], "column_sum")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("batching_default")
    save(echo4_model(), root / "echo4")
    save(column_sum_model(), root / "colsum")
    save(add_model(), root / "add")
    entries = [
        {"name": "default", "base_path": "echo4"},
        {"name": "off", "base_path": "echo4", "max_batch_size": 0},
        {"name": "forced", "base_path": "echo4", "max_batch_size": FORCED, "max_queue_delay_microseconds": 2000},
        {"name": "colsum", "base_path": "colsum"},
        {"name": "add", "base_path": "add"},
    ]
    config = root / "config.json"
    config.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))
    with ServerProcess("--config_path", str(config)) as proc:
        yield proc


def choice(proc: ServerProcess, model: str) -> str:
    """The batching part of the model's load log line."""
    (line,) = [line for line in proc.log().splitlines() if f"loaded model {model} version" in line]
    found = re.search(r", ((?:no )?batching\b.*)$", line)
    assert found, line
    return found[1]


def triton_config(proc: ServerProcess, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/v2/models/{model}/config", timeout=30) as reply:
        return json.loads(reply.read())


def test_default_states_what_it_chose_and_why(server: ServerProcess) -> None:
    text = choice(server, "default")
    on = re.fullmatch(r"batching up to (\d+) rows, delay (\d+) us, on by default: a row costs [\d.]+x less in a "
                      r"batch of \1 \(probe 1: \d+ us, .*; .*max_batch_size 0 turns it off\)", text)
    off = re.fullmatch(r"batching off by default: a row in a batch costs at best [\d.]+x less than alone, not the "
                       r"1.5x it takes \(probe 1: \d+ us.*; .*max_batch_size N forces it on\)", text)
    assert on or off, text
    config = triton_config(server, "default")
    assert config["parameters"]["BATCHING"] == {"string_value": text}  # /config says the same as the log
    if on:
        assert config["max_batch_size"] == int(on.group(1))
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == int(on.group(2))
        assert [t["dims"] for t in config["input"]] == [[4]]  # dims without the batch
    else:
        assert config["max_batch_size"] == 0 and "dynamic_batching" not in config


def test_max_batch_size_0_forces_batching_off(server: ServerProcess) -> None:
    text = choice(server, "off")
    assert text.startswith("batching off (")
    assert text.endswith("config.json: model_config_list[1].config.max_batch_size 0)")
    config = triton_config(server, "off")
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    inputs = [distinct_input(i) for i in range(100)]
    replies = asyncio.run(call_all(server.port, [("off", x, i % 2 == 0) for i, x in enumerate(inputs)]))
    for x, (status, outputs) in zip(inputs, replies, strict=True):
        assert status == 200, outputs
        np.testing.assert_array_equal(outputs["y"], x * 2)
        assert set(outputs["n"].tolist()) == {x.shape[0]}  # ran alone, never joined


def test_max_batch_size_n_forces_batching_on(server: ServerProcess) -> None:
    assert choice(server, "forced").startswith(f"batching up to {FORCED} rows, delay 2000 us (probe 1: ")
    config = triton_config(server, "forced")
    assert config["max_batch_size"] == FORCED and config["dynamic_batching"]["preferred_batch_size"] == [FORCED]
    inputs = [distinct_input(i) for i in range(200)]
    replies = asyncio.run(call_all(server.port, [("forced", x, i % 2 == 0) for i, x in enumerate(inputs)]))
    sizes = [int(outputs["n"][0]) for _, outputs in replies]
    assert max(sizes) > 1, "no two requests were ever batched"
    assert max(sizes) <= FORCED


def test_batched_answers_are_the_unbatched_ones(server: ServerProcess) -> None:
    inputs = [distinct_input(i) for i in range(120)]
    calls = [(model, x, i % 2 == 0) for i, x in enumerate(inputs) for model in ("forced", "default", "off")]
    replies = asyncio.run(call_all(server.port, calls))
    for index, x in enumerate(inputs):
        answers = replies[3 * index:3 * index + 3]
        assert all(status == 200 for status, _ in answers), answers
        forced, default, off = (outputs["y"] for _, outputs in answers)
        assert forced.tobytes() == default.tobytes() == off.tobytes() == (x * 2).tobytes()


def test_models_that_cannot_batch_say_so_and_serve_as_before(server: ServerProcess) -> None:
    assert choice(server, "add").startswith("no batching: needs a dynamic batch dimension (dim 0), but input a has")
    assert choice(server, "colsum") == ("batching off by default: output 0 has shape (4,) for a batch of 1: "
                                        "batching needs outputs whose dim 0 is the batch")
    for model in ("add", "colsum"):
        config = triton_config(server, model)
        assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    body = json.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": list(range(12))}]})
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v2/models/colsum/infer", body.encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        (out,) = json.loads(reply.read())["outputs"]
    assert out["shape"] == [4] and out["data"] == [12.0, 15.0, 18.0, 21.0]


def test_the_single_model_flag_forces_batching_off(tmp_path: Any) -> None:
    save(echo4_model(), tmp_path / "echo4")
    flags = ("--model_name", "echo4", "--model_path", str(tmp_path / "echo4"), "--max_batch_size", "0")
    with ServerProcess(*flags) as proc:
        assert choice(proc, "echo4") == "batching off (--max_batch_size 0)"
