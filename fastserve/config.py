"""Reads an OVMS `config.json`, or the single-model CLI flags, into ModelSettings.

Rules: every problem is a ConfigError naming the file and the field (or the CLI flag), so
start-up can stop with one clear line and exit code 2. Unknown keys are errors, as OVMS's
schema has additionalProperties false. Only paths are checked here; version folders and
model files are looked at by models/loader.py.
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
# OVMS sections fastserve does not implement: refused when non-empty, instead of silently serving less.
# (pipeline_config_list and custom_node_library_config_list: pipelines_from_doc, fastserve/pipelines/.)
UNSUPPORTED_SECTIONS = (
    "mediapipe_config_list",
    "custom_loader_config_list",
)
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
    "mean",
    "scale",
    "color_format",
    "precision",
    # fastserve's own: dynamic batching (unset: where it pays; docs/batching.md) and the execution choice.
    "max_batch_size",
    "max_queue_delay_microseconds",
    "execution_mode",
}
# Accepted by OVMS's parser but not by its schema or not meaningful here; we refuse them loudly
# rather than silently ignore what a user expects to take effect.
UNSUPPORTED_MODEL_KEYS = {"custom_loader_options", "graph_path"}
EXECUTION_MODES = ("auto", "inline", "async")
# A dim is -1 (any), n >= 0, or a range a:b; shapes are "(1,3,224,224)" or "[1,3,224,224]".
_DIM = r"\s*(?:-1|\d+|\d+:\d+)\s*"
SHAPE_RE = re.compile(rf"^\s*[\(\[](?:{_DIM}(?:,{_DIM})*)?[\)\]]\s*$")


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
    unknown = sorted(set(doc) - TOP_LEVEL_KEYS)
    if unknown:
        known = ", ".join(sorted(TOP_LEVEL_KEYS))
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} at the top level (known: {known})")
    for key in UNSUPPORTED_SECTIONS:
        if doc.get(key):
            raise ConfigError(f"{path}: {key}: not supported by fastserve (serve the models themselves)")
    if "monitoring" in doc and not isinstance(doc["monitoring"], dict):
        raise ConfigError(f"{path}: monitoring: must be an object")
    if "model_config_list" not in doc:
        raise ConfigError(f"{path}: model_config_list: required")
    entries = doc["model_config_list"]
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: model_config_list: must be a list")
    models = []
    seen: dict[str, int] = {}
    from fastserve.storage.configfile import config_root

    root = config_root(path) or path.parent  # a remote config.json: relative paths are remote too
    for index, entry in enumerate(entries):
        where = f"{path}: model_config_list[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"config"} or not isinstance(entry["config"], dict):
            raise ConfigError(f'{where}: each entry must be {{"config": {{...}}}}')
        model = model_from_dict(entry["config"], root, where + ".config")
        if model.name in seen:
            raise ConfigError(
                f"{where}.config.name: duplicate model name {model.name!r} (also model_config_list[{seen[model.name]}])"
            )
        seen[model.name] = index
        models.append(model)
    return models, doc


def model_from_dict(fields: dict[str, Any], root: Path | Any, where: str) -> ModelSettings:
    """One `model_config_list[].config` object; relative base paths resolve against `root`."""
    for key in fields:
        if key in UNSUPPORTED_MODEL_KEYS:
            raise ConfigError(f"{where}.{key}: not supported by fastserve")
        if key not in MODEL_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    if "name" not in fields:
        raise ConfigError(f"{where}.name: required")
    if "base_path" not in fields:
        raise ConfigError(f"{where}.base_path: required")
    return ModelSettings(
        name=parse_name(fields["name"], f"{where}.name"),
        base_path=parse_base_path(fields["base_path"], root, f"{where}.base_path"),
        remote=parse_remote(fields["base_path"], root, f"{where}.base_path"),
        version_policy=parse_version_policy(fields.get("model_version_policy"), f"{where}.model_version_policy"),
        nireq=parse_count(fields.get("nireq"), f"{where}.nireq"),
        target_device=parse_target_device(fields.get("target_device"), f"{where}.target_device"),
        plugin_config=parse_plugin_config(fields.get("plugin_config"), f"{where}.plugin_config"),
        shape=parse_shape(fields.get("shape"), f"{where}.shape"),
        batch_size=parse_batch_size(fields.get("batch_size"), f"{where}.batch_size"),
        layout=parse_layout(fields.get("layout"), f"{where}.layout"),
        **preprocessing(fields, f"{where}."),
        max_batch_size=parse_optional_count(fields.get("max_batch_size"), f"{where}.max_batch_size"),
        max_queue_delay_microseconds=parse_optional_count(
            fields.get("max_queue_delay_microseconds"), f"{where}.max_queue_delay_microseconds"
        ),
        execution_mode=parse_choice(fields.get("execution_mode"), EXECUTION_MODES, f"{where}.execution_mode"),
        source=where,
    )


def model_from_flags(
    name: Any,
    path: Any,
    *,
    version_policy: Any = None,
    nireq: Any = None,
    target_device: Any = None,
    plugin_config: Any = None,
    shape: Any = None,
    batch_size: Any = None,
    layout: Any = None,
    preprocess: dict[str, Any] | None = None,
    max_batch_size: Any = None,
) -> ModelSettings:
    """The single-model flags (`--model_name` + `--model_path` ...); errors name the flag."""
    return ModelSettings(
        name=parse_name(name, "--model_name"),
        base_path=parse_base_path(path, Path.cwd(), "--model_path"),
        remote=parse_remote(path, Path.cwd(), "--model_path"),
        version_policy=parse_version_policy(version_policy, "--model_version_policy"),
        nireq=parse_count(nireq, "--nireq"),
        target_device=parse_target_device(target_device, "--target_device"),
        plugin_config=parse_plugin_config(plugin_config, "--plugin_config"),
        shape=parse_shape(shape, "--shape"),
        batch_size=parse_batch_size(batch_size, "--batch_size"),
        layout=parse_layout(layout, "--layout"),
        **preprocessing(preprocess or {}, "--"),
        max_batch_size=parse_optional_count(max_batch_size, "--max_batch_size"),
    )


def preprocessing(fields: dict[str, Any], prefix: str) -> dict[str, Any]:
    """mean, scale, color_format, precision (OVMS syntax, fastserve/preprocess_config.py)."""
    from fastserve import preprocess_config as pc

    return {
        "mean": pc.parse_values(fields.get("mean"), prefix + "mean"),
        "scale": pc.parse_values(fields.get("scale"), prefix + "scale", nonzero=True),
        "color_format": pc.parse_color_format(fields.get("color_format"), prefix + "color_format"),
        "precision": pc.parse_precision(fields.get("precision"), prefix + "precision"),
    }


def parse_name(value: Any, where: str) -> str:
    # The name is a URL path segment (/v2/models/<name>/...): no '/', no blanks around it.
    if not isinstance(value, str) or not value.strip() or "/" in value or value != value.strip():
        raise ConfigError(f"{where}: must be a non-empty string without '/' or surrounding blanks, not {value!r}")
    return value


def parse_base_path(value: Any, root: Path | Any, where: str) -> Path:
    """A local folder or file; for a remote one (s3://...), the local cache folder it is mirrored into."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be a non-empty string")
    remote = parse_remote(value, root, where)
    if remote:
        from fastserve.storage.location import mirror_path, parse_url

        return mirror_path(parse_url(remote, where))
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = root / path
    path = path.resolve()
    if not path.exists():
        raise ConfigError(f"{where}: {path} does not exist")
    return path


def parse_remote(value: Any, root: Path | Any, where: str) -> str:
    """The remote URL a base path names ("" for a local one): absolute, or relative to a remote config.json."""
    from fastserve.storage.location import RemoteURL, parse_url, scheme_of

    if not isinstance(value, str):
        return ""
    if scheme_of(value) is None:
        return str(root.join(value)) if isinstance(root, RemoteURL) and not value.startswith("/") else ""
    url = parse_url(value, where)
    from fastserve.storage.store import available, extra_hint

    if not available(url.scheme):
        raise ConfigError(f"{where}: {extra_hint(url.scheme)}")
    return str(url)


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
        raise ConfigError(
            f'{where}: must be one of {{"latest": {{"num_versions": N}}}}, {{"specific": {{"versions": [...]}}}} '
            f'or {{"all": {{}}}}, not {_short(value)}'
        )
    ((kind, body),) = value.items()
    if kind not in ("latest", "specific", "all"):
        raise ConfigError(f"{where}: unknown policy {kind!r} (latest, specific or all)")
    if not isinstance(body, dict):
        raise ConfigError(f"{where}.{kind}: must be an object, not {_short(body)}")
    if kind == "all":
        if body:
            raise ConfigError(f"{where}.all: takes no fields")
        return VersionPolicy("all")
    if kind == "latest":
        extra = sorted(set(body) - {"num_versions"})
        if extra:
            raise ConfigError(f"{where}.latest: unknown key {extra[0]!r}")
        count = body.get("num_versions", 1)
        if not _is_int(count) or count < 1:
            raise ConfigError(f"{where}.latest.num_versions: must be an integer >= 1, not {_short(count)}")
        return VersionPolicy("latest", num_versions=count)
    versions = body.get("versions")
    extra = sorted(set(body) - {"versions"})
    if extra:
        raise ConfigError(f"{where}.specific: unknown key {extra[0]!r}")
    if not isinstance(versions, list) or not versions:
        raise ConfigError(f"{where}.specific.versions: required, a non-empty list of versions")
    if not all(_is_int(v) and v > 0 for v in versions):
        raise ConfigError(f"{where}.specific.versions: versions must be integers > 0, not {_short(versions)}")
    return VersionPolicy("specific", versions=tuple(sorted(set(versions))))


def parse_plugin_config(value: Any, where: str) -> dict[str, Any]:
    """OpenVINO properties; the device checks names and values when the model compiles."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}: not valid JSON: {value!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f'{where}: must be an object of OpenVINO properties, e.g. {{"NUM_STREAMS": 2}}')
    for key, item in value.items():
        if not key:
            raise ConfigError(f"{where}: property names must not be empty")
        if not isinstance(item, str | int | float | bool):
            raise ConfigError(f"{where}.{key}: values must be strings, numbers or booleans, not {_short(item)}")
    return dict(value)


def parse_shape(value: Any, where: str) -> str | dict[str, str] | None:
    """ "auto", "(1,3,224,224)" (dims may be -1 or a:b), or an object of such strings per input."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                return parse_shape(orjson.loads(text), where)
            except orjson.JSONDecodeError:
                raise ConfigError(f"{where}: not valid JSON: {value!r}") from None
        if text == "auto":
            return text
        if not SHAPE_RE.match(text):
            raise ConfigError(
                f'{where}: {value!r} is not a shape like "(1,3,224,224)" (dims: n, -1 or a:b), or "auto"'
            )
        for low, high in re.findall(r"(\d+):(\d+)", text):
            if int(low) > int(high):
                raise ConfigError(f"{where}: {value!r}: the range {low}:{high} is empty")
        return re.sub(r"\s+", "", text)
    if isinstance(value, dict) and value:
        out = {}
        for name, item in value.items():
            if not isinstance(item, str):
                raise ConfigError(f"{where}.{name}: must be a shape string such as \"(1,3,224,224)\"")
            parsed = parse_shape(item, f"{where}.{name}")
            if parsed is None:
                raise ConfigError(f"{where}.{name}: must not be empty")
            assert isinstance(parsed, str)
            out[name] = parsed
        return out
    raise ConfigError(f"{where}: must be a shape string or an object of shape strings per input, not {_short(value)}")


def parse_batch_size(value: Any, where: str) -> int | str | None:
    if value is None or value == "":
        return None
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if _is_int(value) and value >= 0:
        return value or None  # 0 means: the model's own batch, as in OVMS
    raise ConfigError(f'{where}: must be an integer >= 0 or "auto", not {_short(value)}')


def parse_layout(value: Any, where: str) -> str | dict[str, str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
        return value
    raise ConfigError(f'{where}: must be a layout string like "NHWC:NCHW" or an object of them per input')


def parse_count(value: Any, where: str) -> int:
    """A non-negative integer, 0 when unset (nireq 0: OpenVINO's optimal number)."""
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{where}: must be an integer >= 0, not {_short(value)}")
    return int(value)


def parse_optional_count(value: Any, where: str) -> int | None:
    """A non-negative integer, None when unset (so 0 given is told apart from no value)."""
    return None if value is None else parse_count(value, where)


def parse_target_device(value: Any, where: str) -> str:
    if value is None or value == "":
        return "CPU"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a device name such as CPU, GPU or AUTO, not {_short(value)}")
    return value.strip()


def parse_choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value is None:
        return choices[0]
    if value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(choices)}, not {_short(value)}")
    return str(value)


def pipelines_from_doc(doc: dict[str, Any], path: Path, models: list[ModelSettings]) -> tuple[Any, ...]:
    """pipeline_config_list (with custom_node_library_config_list) as PipelineConfigs; ConfigError names the node."""
    from fastserve.pipelines.config import parse_pipelines

    return parse_pipelines(doc, path, {m.name for m in models})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    """A value as it would appear in the JSON, cut to a readable length for messages."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
