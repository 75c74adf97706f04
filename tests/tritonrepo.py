"""The model repository of the Triton-extension tests (config, stats, perf_analyzer), built in code.

Each model is there for one max_batch_size rule of fastserve/triton/config.py:
- ``add``: tests.modelzoo.add_model, static [1,10]: max_batch_size 0, dims [1,10] (no --shape needed);
- ``dynamic``: dynamic_model, [-1,-1], no batching: max_batch_size 0, dims [-1,-1];
- ``batched``: dynamic_model with max_batch_size 8 (its dims past the batch are dynamic, so the
  load-time probe never turns batching off): max_batch_size 8, dims [-1], dynamic_batching;
- ``ranged``: the same with shape "(1:4,-1)": batched, but dim 0 stops at 4, so max_batch_size 4;
- ``auto``: versioned_model(1), [-1,4], with OVMS's batch_size "auto" and max_batch_size 0 (no
  fastserve batching, as OVMS serves it): max_batch_size 4 (Triton's default for an unbounded
  batch), dims [4];
- ``versioned``: versions 1 and 2 of versioned_model, all served, max_batch_size 0 (the rule for a
  dynamic dim 0 that fastserve does not batch: max_batch_size 0, dims [-1,4]); without it,
  batching would be on or off by the load-time probe (tests/e2e/test_batching_default.py);
- ``add_twice``: a DAG pipeline a, b -> add -> add (sum + b) -> ``total``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.modelzoo import add_model, dynamic_model, save, versioned_model

BATCHED_MAX = 8
BATCHED_DELAY_US = 500
RANGED_MAX = 4


def write_triton_repository(root: Path) -> Path:
    save(add_model(), root / "add")
    save(dynamic_model(), root / "dynamic")
    save(versioned_model(1), root / "versioned", 1)
    save(versioned_model(2), root / "versioned", 2)
    models = [
        {"name": "add", "base_path": "add"},
        {"name": "dynamic", "base_path": "dynamic"},
        {"name": "batched", "base_path": "dynamic", "max_batch_size": BATCHED_MAX,
         "max_queue_delay_microseconds": BATCHED_DELAY_US},
        {"name": "ranged", "base_path": "dynamic", "shape": f"(1:{RANGED_MAX},-1)", "max_batch_size": BATCHED_MAX,
         "max_queue_delay_microseconds": BATCHED_DELAY_US},
        {"name": "auto", "base_path": "versioned", "batch_size": "auto", "max_batch_size": 0,
         "model_version_policy": {"specific": {"versions": [1]}}},
        {"name": "versioned", "base_path": "versioned", "model_version_policy": {"all": {}}, "max_batch_size": 0},
    ]
    src = {"node_name": "request"}
    pipeline = {
        "name": "add_twice", "inputs": ["a", "b"],
        "nodes": [
            {"name": "first", "type": "DL model", "model_name": "add",
             "inputs": [{"a": {**src, "data_item": "a"}}, {"b": {**src, "data_item": "b"}}],
             "outputs": [{"data_item": "sum", "alias": "sum"}]},
            {"name": "second", "type": "DL model", "model_name": "add",
             "inputs": [{"a": {"node_name": "first", "data_item": "sum"}}, {"b": {**src, "data_item": "b"}}],
             "outputs": [{"data_item": "sum", "alias": "sum"}]},
        ],
        "outputs": [{"total": {"node_name": "second", "data_item": "sum"}}],
    }
    doc = {"model_config_list": [{"config": m} for m in models], "pipeline_config_list": [pipeline]}
    path = root / "config.json"
    path.write_text(json.dumps(doc, indent=1))
    return path
