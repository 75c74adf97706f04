"""A small model repository for the operations tests (metrics, overload, codings, CORS).

Only the models those tests use, so each of their servers starts in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.modelzoo import add_model, dynamic_model, failing_model, heavy_model, save


def write_ops_repository(root: Path, heavy: dict[str, Any] | None = None, top: dict[str, Any] | None = None) -> Path:
    """add, dynamic, failing and heavy (v1 each) under root; `heavy` adds config keys (e.g. nireq),
    `top` adds top-level config.json sections (e.g. monitoring). Returns the config.json path."""
    entries = []
    for name, model in (("add", add_model()), ("dynamic", dynamic_model()), ("failing", failing_model()),
                        ("heavy", heavy_model())):
        save(model, root / name, 1)
        config: dict[str, Any] = {"name": name, "base_path": name}
        if name == "heavy" and heavy:
            config.update(heavy)
        entries.append({"config": config})
    path = root / "config.json"
    path.write_text(json.dumps({"model_config_list": entries, **(top or {})}, indent=2))
    return path
