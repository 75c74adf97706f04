"""Reads an OVMS `config.json` (or the single-model CLI flags) into ModelSettings.

Rules: every problem is a ConfigError naming the file and the field, so start-up can stop
with one clear line. Unknown keys are errors, as OVMS's schema has additionalProperties false.
Only paths are checked here; model files are opened by the repository.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from fastserve.errors import ConfigError
from fastserve.settings import ModelSettings, VersionPolicy

TOP_LEVEL_KEYS = {
    "model_config_list",
    "pipeline_config_list",
    "custom_node_library_config_list",
    "monitoring",
    "mediapipe_config_list",
    "custom_loader_config_list",
}
MODEL_KEYS = {
    "name",
    "base_path",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
    "shape",
    "batch_size",
    "layout",
    "allow_cache",
    # fastserve's own: opt-in dynamic batching and the execution choice.
    "max_batch_size",
    "max_queue_delay_microseconds",
    "execution_mode",
}
# Accepted by OVMS's parser but not by its schema or not meaningful here; we refuse them loudly
# rather than silently ignore what a user expects to take effect.
UNSUPPORTED_MODEL_KEYS = {"mean", "scale", "color_format", "precision", "custom_loader_options", "graph_path"}
SHAPE_RE = re.compile(r"^\s*[\(\[]\s*(-?\d+(:\d+)?\s*(,\s*-?\d+(:\d+)?\s*)*)?[\)\]]\s*$")


def load_config_file(path: Path) -> tuple[list[ModelSettings], dict[str, Any]]:
    """Parse config.json: the model settings, and the raw top-level document for the other sections."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    unknown = set(doc) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r} at the top level")
    for key in ("mediapipe_config_list", "custom_loader_config_list"):
        if doc.get(key):
            raise ConfigError(f"{path}: {key}: not supported by fastserve")
    entries = doc.get("model_config_list")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: model_config_list: must be a list")
    models = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{path}: model_config_list[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"config"} or not isinstance(entry["config"], dict):
            raise ConfigError(f'{where}: each entry must be {{"config": {{...}}}}')
        model = model_from_dict(entry["config"], path.parent, where + ".config")
        if model.name in seen:
            raise ConfigError(f"{where}.config.name: duplicate model name {model.name!r}")
        seen.add(model.name)
        models.append(model)
    return models, doc


def model_from_dict(fields: dict[str, Any], root: Path, where: str) -> ModelSettings:
    for key in fields:
        if key in UNSUPPORTED_MODEL_KEYS:
            raise ConfigError(f"{where}.{key}: not supported by fastserve (convert the model with it instead)")
        if key not in MODEL_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    name = fields.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{where}.name: required, a non-empty string without '/'")
    base = fields.get("base_path")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}.base_path: required, a non-empty string")
    if re.match(r"^[a-z0-9]+://", base):
        raise ConfigError(f"{where}.base_path: remote storage ({base.split('://')[0]}://) is not supported")
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = (root / base_path).resolve()
    if not base_path.exists():
        raise ConfigError(f"{where}.base_path: {base_path} does not exist")
    return ModelSettings(
        name=name,
        base_path=base_path,
        version_policy=parse_version_policy(fields.get("model_version_policy"), f"{where}.model_version_policy"),
        nireq=_int(fields, "nireq", 0, where),
        target_device=_target_device(fields.get("target_device"), f"{where}.target_device"),
        plugin_config=parse_plugin_config(fields.get("plugin_config"), f"{where}.plugin_config"),
        shape=parse_shape(fields.get("shape"), f"{where}.shape"),
        batch_size=parse_batch_size(fields.get("batch_size"), f"{where}.batch_size"),
        layout=_layout(fields.get("layout"), f"{where}.layout"),
        max_batch_size=_int(fields, "max_batch_size", 0, where),
        max_queue_delay_microseconds=_int(fields, "max_queue_delay_microseconds", 0, where),
        execution_mode=_choice(fields.get("execution_mode", "auto"), ("auto", "inline", "async"), where),
    )


def parse_version_policy(value: Any, where: str) -> VersionPolicy:
    """OVMS forms: {"latest": {"num_versions": N}}, {"specific": {"versions": [...]}}, {"all": {}}."""
    if value is None:
        return VersionPolicy()
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}: not valid JSON: {value!r}") from None
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(f"{where}: must be one of latest, specific or all")
    ((kind, body),) = value.items()
    if not isinstance(body, dict):
        raise ConfigError(f"{where}.{kind}: must be an object")
    if kind == "all":
        if body:
            raise ConfigError(f"{where}.all: takes no fields")
        return VersionPolicy("all")
    if kind == "latest":
        if set(body) - {"num_versions"}:
            raise ConfigError(f"{where}.latest: unknown key {sorted(set(body) - {'num_versions'})[0]!r}")
        count = body.get("num_versions", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"{where}.latest.num_versions: must be an integer >= 1")
        return VersionPolicy("latest", num_versions=count)
    if kind == "specific":
        versions = body.get("versions")
        if set(body) != {"versions"} or not isinstance(versions, list) or not versions:
            raise ConfigError(f"{where}.specific.versions: required, a non-empty list of versions")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in versions):
            raise ConfigError(f"{where}.specific.versions: versions must be integers > 0")
        return VersionPolicy("specific", versions=tuple(sorted(set(versions))))
    raise ConfigError(f"{where}: unknown policy {kind!r} (latest, specific or all)")


def parse_plugin_config(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}: not valid JSON: {value!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be an object of OpenVINO properties")
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise ConfigError(f"{where}.{key}: values must be strings, numbers or booleans")
    return dict(value)


def parse_shape(value: Any, where: str) -> str | dict[str, str] | None:
    """"auto", "(1,3,224,224)" (dims may be -1 or a:b), or an object of such strings per input."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                return parse_shape(orjson.loads(stripped), where)
            except orjson.JSONDecodeError:
                raise ConfigError(f"{where}: not valid JSON: {value!r}") from None
        if stripped == "auto" or SHAPE_RE.match(stripped):
            return stripped
        raise ConfigError(f"{where}: {value!r} is not a shape like \"(1,3,224,224)\", with -1 or a:b dims, or auto")
    if isinstance(value, dict) and value:
        out = {}
        for name, item in value.items():
            if not isinstance(item, str):
                raise ConfigError(f"{where}.{name}: must be a shape string")
            parsed = parse_shape(item, f"{where}.{name}")
            assert isinstance(parsed, str)
            out[name] = parsed
        return out
    raise ConfigError(f"{where}: must be a shape string or an object of shape strings per input")


def parse_batch_size(value: Any, where: str) -> int | str | None:
    if value is None or value == "":
        return None
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value or None  # 0 means: the model's own batch
    raise ConfigError(f"{where}: must be an integer >= 0 or \"auto\"")


def _layout(value: Any, where: str) -> str | dict[str, str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
        return value
    raise ConfigError(f"{where}: must be a layout string like \"NHWC:NCHW\" or an object of them per input")


def _int(fields: dict[str, Any], key: str, default: int, where: str) -> int:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.{key}: must be an integer >= 0")
    return value


def _target_device(value: Any, where: str) -> str:
    if value is None or value == "":
        return "CPU"
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string such as CPU, GPU or AUTO")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}.execution_mode: must be one of {', '.join(choices)}")
    return str(value)
