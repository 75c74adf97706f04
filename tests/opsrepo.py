"""A small model repository for the operations tests (metrics, overload, codings, CORS).

Only the models those tests use, so each of their servers starts in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.modelzoo import add_model, dynamic_model, failing_model, heavy_model, save
from tests.slowwork import spin_model

BUILDERS = {"add": add_model, "dynamic": dynamic_model, "failing": failing_model, "heavy": heavy_model,
            "spin": spin_model}


def write_ops_repository(
    root: Path, models: tuple[str, ...] = tuple(BUILDERS), extra: dict[str, dict[str, Any]] | None = None,
    top: dict[str, Any] | None = None,
) -> Path:
    """`models` (of BUILDERS' names; v1 each) under root; `extra` adds config keys per model (e.g.
    {"spin": {"nireq": 2}}), `top` adds top-level config.json sections (e.g. monitoring). Returns
    config.json's path."""
    entries = []
    for name in models:
        save(BUILDERS[name](), root / name, 1)
        config: dict[str, Any] = {"name": name, "base_path": name}
        config.update((extra or {}).get(name, {}))
        entries.append({"config": config})
    path = root / "config.json"
    path.write_text(json.dumps({"model_config_list": entries, **(top or {})}, indent=2))
    return path
