"""config.json and CLI flags -> settings, and every start-up configuration error.

Each error goes through the real entry point, `fastserve.cli.main(argv)`, in-process: it
must return exit code 2 and print exactly one line on stderr naming the file and the field
(or the flag), before anything listens. tests/e2e/test_cli.py checks a few of them in a real
process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import fastserve.server
from fastserve import cli
from fastserve.config import load_config_file, parse_shape
from fastserve.errors import ConfigError
from fastserve.settings import ModelSettings, VersionPolicy


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """cli.main sets up root logging: restore it; and a config that wrongly passes must not start serving."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def started(*args: Any, **kwargs: Any) -> int:
        for arg in args:
            if hasattr(arg, "close"):
                arg.close()  # the un-awaited coroutine
        raise AssertionError("the configuration was accepted and the server started")

    monkeypatch.setattr(fastserve.server, "uvloop", SimpleNamespace(run=started))
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A folder with model `m` in versions 1 and 2 (empty files: nothing is compiled in these tests)."""
    for version in (1, 2):
        folder = tmp_path / "models" / "m" / str(version)
        folder.mkdir(parents=True)
        (folder / "model.xml").write_text("")
    return tmp_path


def write_config(folder: Path, doc: Any, name: str = "config.json") -> Path:
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def one_model(**fields: Any) -> dict[str, Any]:
    return {"model_config_list": [{"config": {"name": "m", "base_path": "models/m", **fields}}]}


def startup_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; assert exit code 2 and a single stderr line; return that line without its prefix."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastserve: error: ")
    return lines[0].removeprefix("fastserve: error: ")


def config_error(repo: Path, doc: Any, capsys: pytest.CaptureFixture[str]) -> str:
    """The error for config.json `doc`, with the config file's path checked and cut off."""
    path = write_config(repo, doc)
    message = startup_error(["--config_path", str(path)], capsys)
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


# Accepted configurations


def test_config_file_models_and_relative_paths(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"model_config_list": [
        {"config": {"name": "m", "base_path": "models/m"}},
        {"config": {
            "name": "tuned", "base_path": str(repo / "models" / "m"), "model_version_policy": {"all": {}},
            "nireq": 4, "target_device": "AUTO", "plugin_config": {"NUM_STREAMS": 2, "PERFORMANCE_HINT": "THROUGHPUT"},
            "shape": "(1, 3, 1:8, -1)", "batch_size": "auto", "layout": "NHWC:NCHW", "allow_cache": True,
        }},
        {"config": {"name": "by_input", "base_path": "./models/../models/m", "shape": {"x": "auto", "y": "[2,3]"},
                    "batch_size": "4"}},
    ]}
    path = write_config(repo, doc)
    monkeypatch.chdir(repo / "models")  # relative base paths follow the config file, not the working directory
    models, raw = load_config_file(path)
    assert raw == doc
    first, tuned, by_input = models
    where = f"{path}: model_config_list[0].config"
    assert first == ModelSettings(name="m", base_path=repo / "models" / "m", source=where)
    assert first.version_policy == VersionPolicy("latest", 1) and first.nireq == 0 and first.target_device == "CPU"
    assert tuned.version_policy == VersionPolicy("all")
    assert (tuned.nireq, tuned.target_device, tuned.layout) == (4, "AUTO", "NHWC:NCHW")
    assert tuned.plugin_config == {"NUM_STREAMS": 2, "PERFORMANCE_HINT": "THROUGHPUT"}
    assert (tuned.shape, tuned.batch_size) == ("(1,3,1:8,-1)", "auto")
    assert by_input.base_path == repo / "models" / "m"
    assert (by_input.shape, by_input.batch_size) == ({"x": "auto", "y": "[2,3]"}, 4)


def test_empty_model_list_and_empty_optional_sections_are_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"model_config_list": [], "pipeline_config_list": [], "monitoring": {}})
    assert load_config_file(path)[0] == []


def test_single_model_flags_and_defaults(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    args = cli.build_parser().parse_args([
        "--model_name", "m", "--model_path", "models/m", "--nireq", "3", "--target_device", "CPU",
        "--plugin_config", '{"NUM_STREAMS": "2"}', "--model_version_policy", '{"latest": {"num_versions": 2}}',
        "--shape", "(1,10)", "--batch_size", "0", "--log_level", "debug",
    ])
    settings = cli.settings_from_args(args)
    (model,) = settings.models
    assert model.name == "m" and model.base_path == repo / "models" / "m"  # relative to the working directory
    assert model.version_policy == VersionPolicy("latest", 2) and model.nireq == 3
    assert model.plugin_config == {"NUM_STREAMS": "2"} and model.shape == "(1,10)" and model.batch_size is None
    assert model.where("base_path") == "--model_path" and model.where("nireq") == "--nireq"
    assert settings.config_path is None and settings.log_level == "DEBUG"
    # OVMS defaults where the issue asks for them: REST on 8000 on every interface, CPU.
    assert (settings.rest_port, settings.rest_bind_address, model.target_device) == (8000, "0.0.0.0", "CPU")
    plain = cli.settings_from_args(cli.build_parser().parse_args(["--model_name", "m", "--model_path", "models/m"]))
    assert plain.models[0].target_device == "CPU" and plain.models[0].plugin_config == {}


def test_no_model_flags_serve_the_demo() -> None:
    from fastserve.demo import DEMO_CONFIG

    settings = cli.settings_from_args(cli.build_parser().parse_args(["--rest_port", "0"]))
    assert settings.config_path == DEMO_CONFIG and settings.rest_port == 0
    assert {m.name for m in settings.models} == {"digits", "add"}


@pytest.mark.parametrize(("text", "parsed"), [
    ("(1,3,224,224)", "(1,3,224,224)"), ("[1, 3]", "[1,3]"), (" ( -1 , 2:8 ) ", "(-1,2:8)"), ("()", "()"),
    ("auto", "auto"), ('{"a": "(1,2)", "b": "auto"}', {"a": "(1,2)", "b": "auto"}), ("", None), (None, None),
])
def test_shape_forms(text: str | None, parsed: object) -> None:
    assert parse_shape(text, "--shape") == parsed


# Errors in the configuration file


def test_unreadable_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert startup_error(["--config_path", str(missing)], capsys) == (
        f"{missing}: cannot read the configuration file: No such file or directory"
    )
    assert startup_error(["--config_path", str(tmp_path)], capsys) == (
        f"{tmp_path}: cannot read the configuration file: Is a directory"
    )


@pytest.mark.parametrize("text", ['{"model_config_list": [', "", "{'model_config_list': []}", "[1,]"])
def test_invalid_json(repo: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, text, capsys).startswith("not valid JSON: ")


@pytest.mark.parametrize(("doc", "message"), [
    ([], "the top level must be a JSON object"),
    ({"model_config_list": [], "modelconfiglist": []}, "unknown key 'modelconfiglist' at the top level"),
    ({}, "model_config_list: required"),
    ({"model_config_list": {"config": {}}}, "model_config_list: must be a list"),
    ({"model_config_list": [{"name": "m", "base_path": "models/m"}]},
     'model_config_list[0]: each entry must be {"config": {...}}'),
    ({"model_config_list": [{"config": {"name": "m", "base_path": "models/m"}, "extra": 1}]},
     'model_config_list[0]: each entry must be {"config": {...}}'),
    ({"model_config_list": [], "mediapipe_config_list": [{"name": "g"}]}, "mediapipe_config_list: not supported"),
    ({"model_config_list": [], "monitoring": []}, "monitoring: must be an object"),
])
def test_bad_top_level(repo: Path, doc: Any, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, doc, capsys).startswith(message)


@pytest.mark.parametrize(("fields", "message"), [
    ({"nireqs": 2}, "model_config_list[0].config: unknown key 'nireqs'"),
    ({"stateful": True}, "model_config_list[0].config: unknown key 'stateful'"),
    ({"graph_path": "g.pbtxt"}, "model_config_list[0].config.graph_path: not supported by fastserve"),
])
def test_unknown_model_key(repo: Path, fields: dict, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, one_model(**fields), capsys).startswith(message)


@pytest.mark.parametrize(("config", "message"), [
    ({"base_path": "models/m"}, "model_config_list[0].config.name: required"),
    ({"name": "m"}, "model_config_list[0].config.base_path: required"),
    ({"name": "", "base_path": "models/m"}, "model_config_list[0].config.name: must be a non-empty string"),
    ({"name": "a/b", "base_path": "models/m"},
     "model_config_list[0].config.name: must be a non-empty string without '/'"),
    ({"name": 7, "base_path": "models/m"}, "model_config_list[0].config.name: must be a non-empty string"),
    ({"name": "m", "base_path": ""}, "model_config_list[0].config.base_path: must be a non-empty string"),
    ({"name": "m", "base_path": ["models/m"]}, "model_config_list[0].config.base_path: must be a non-empty string"),
    ({"name": "m", "base_path": "azure://share/m"},
     "model_config_list[0].config.base_path: azure:// is not a storage URL; use azfs://share/path (Azure Files)"),
    ({"name": "m", "base_path": "azfs://Share_1/m"},
     "model_config_list[0].config.base_path: 'azfs://Share_1/m': 'Share_1' is not a share name (azfs://share/path)"),
    ({"name": "m", "base_path": "ftp://host/m"}, "model_config_list[0].config.base_path: unknown storage ftp://"),
    ({"name": "m", "base_path": "s3://B/m"}, "model_config_list[0].config.base_path: 's3://B/m': 'B' is not a bucket"),
])
def test_missing_or_bad_name_and_base_path(repo: Path, config: dict, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, {"model_config_list": [{"config": config}]}, capsys).startswith(message)


def test_missing_base_path_dir(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"model_config_list": [{"config": {"name": "m", "base_path": "models/m"}},
                                 {"config": {"name": "gone", "base_path": "models/gone"}}]}
    assert config_error(repo, doc, capsys) == (
        f"model_config_list[1].config.base_path: {repo / 'models' / 'gone'} does not exist"
    )


def test_no_version_folders(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "models" / "flat").mkdir()
    (repo / "models" / "flat" / "model.xml").write_text("")  # OVMS wants <version>/model.xml
    message = config_error(repo, {"model_config_list": [{"config": {"name": "flat", "base_path": "models/flat"}}]},
                           capsys)
    assert message.startswith("model_config_list[0].config.base_path: model flat: no version folder with a model file")


def test_policy_matching_nothing(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = config_error(repo, one_model(model_version_policy={"specific": {"versions": [3, 4]}}), capsys)
    assert message == ("model_config_list[0].config.model_version_policy: model m: specific [3, 4] matches none of "
                       "the versions on disk [1, 2]")


@pytest.mark.parametrize(("value", "message"), [
    ({"latest": {"num_versions": 0}}, "model_version_policy.latest.num_versions: must be an integer >= 1"),
    ({"specific": {"versions": []}}, "model_version_policy.specific.versions: required"),
    ({"oldest": {}}, "model_version_policy: unknown policy 'oldest'"),
    ("latest", "model_version_policy: not valid JSON"),
    ({"all": {}, "latest": {}}, "model_version_policy: must be one of"),
])
def test_bad_policy_forms(repo: Path, value: Any, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, one_model(model_version_policy=value), capsys).startswith(
        "model_config_list[0].config." + message
    )


@pytest.mark.parametrize("value", [
    "(1,-2)", "(1,3", "1,3", "(a,b)", "(1,,3)", "(1.5)", "(4:2)", "(-1:4)", "dynamic", 5, [1, 3], {}, {"x": 1},
    {"x": ""}, "{bad json",
])
def test_bad_shape(repo: Path, value: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, one_model(shape=value), capsys).startswith("model_config_list[0].config.shape")


@pytest.mark.parametrize("value", [-1, "-1", 1.5, "x", True, [4], "AUTO"])
def test_bad_batch_size(repo: Path, value: Any, capsys: pytest.CaptureFixture[str]) -> None:
    message = config_error(repo, one_model(batch_size=value), capsys)
    assert message.startswith('model_config_list[0].config.batch_size: must be an integer >= 0 or "auto"')


@pytest.mark.parametrize(("value", "message"), [
    ("NUM_STREAMS=2", "plugin_config: not valid JSON"),
    ([["NUM_STREAMS", 2]], "plugin_config: must be an object of OpenVINO properties"),
    ({"NUM_STREAMS": {"value": 2}}, "plugin_config.NUM_STREAMS: values must be strings, numbers or booleans"),
    ({"NUM_STREAMS": None}, "plugin_config.NUM_STREAMS: values must be strings, numbers or booleans"),
    ({"": 1}, "plugin_config: property names must not be empty"),
])
def test_bad_plugin_config(repo: Path, value: Any, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    message = "model_config_list[0].config." + message
    assert config_error(repo, one_model(plugin_config=value), capsys).startswith(message)


@pytest.mark.parametrize(("fields", "message"), [
    ({"nireq": -1}, "nireq: must be an integer >= 0"),
    ({"nireq": "2"}, "nireq: must be an integer >= 0"),
    ({"nireq": True}, "nireq: must be an integer >= 0"),
    ({"target_device": 1}, "target_device: must be a device name"),
    ({"target_device": "  "}, "target_device: must be a device name"),
    ({"layout": 3}, "layout: must be a layout string"),
    ({"execution_mode": "fast"}, "execution_mode: must be one of auto, inline, async"),
    ({"max_batch_size": -4}, "max_batch_size: must be an integer >= 0"),
])
def test_bad_model_fields(repo: Path, fields: dict, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_error(repo, one_model(**fields), capsys).startswith("model_config_list[0].config." + message)


def test_duplicate_names(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"model_config_list": [{"config": {"name": "m", "base_path": "models/m"}},
                                 {"config": {"name": "n", "base_path": "models/m"}},
                                 {"config": {"name": "m", "base_path": "models/m/1/model.xml"}}]}
    assert config_error(repo, doc, capsys) == (
        "model_config_list[2].config.name: duplicate model name 'm' (also model_config_list[0])"
    )


# Errors in the flags


def test_config_path_excludes_single_model_flags(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(repo, one_model())
    assert startup_error(["--config_path", str(path), "--model_name", "m", "--nireq", "2"], capsys) == (
        "--config_path excludes the single-model flags (--model_name, --nireq)"
    )
    assert startup_error(["--config_path", str(path), "--shape", "auto"], capsys) == (
        "--config_path excludes the single-model flags (--shape)"
    )


def test_model_name_and_model_path_go_together(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = "--model_name needs --model_path (the model's folder or file)"
    assert startup_error(["--model_name", "m"], capsys) == message
    assert startup_error(["--model_path", str(repo / "models" / "m")], capsys).startswith(
        "--model_path needs --model_name"
    )
    assert startup_error(["--batch_size", "4"], capsys).startswith("--batch_size: needs --model_name and --model_path")


@pytest.mark.parametrize(("flags", "message"), [
    (["--model_path", "models/none"], "--model_path: {repo}/models/none does not exist"),
    (["--model_path", "models/m", "--model_name", "a/b"], "--model_name: must be a non-empty string without '/'"),
    (["--model_path", "models/m", "--shape", "(1;2)"], "--shape: '(1;2)' is not a shape"),
    (["--model_path", "models/m", "--shape", "{oops"], "--shape: not valid JSON"),
    (["--model_path", "models/m", "--batch_size", "-3"], '--batch_size: must be an integer >= 0 or "auto"'),
    (["--model_path", "models/m", "--plugin_config", "{NUM_STREAMS: 1}"], "--plugin_config: not valid JSON"),
    (["--model_path", "models/m", "--plugin_config", "[1]"], "--plugin_config: must be an object"),
    (["--model_path", "models/m", "--model_version_policy", '{"latest": {"num_versions": 0}}'],
     "--model_version_policy.latest.num_versions: must be an integer >= 1"),
    (["--model_path", "models/m", "--model_version_policy", '{"specific": {"versions": [9]}}'],
     "--model_version_policy: model m: specific [9] matches none of the versions on disk [1, 2]"),
    (["--model_path", "models/m", "--nireq", "-1"], "--nireq: must be an integer >= 0"),
    (["--model_path", "models/m", "--rest_port", "70000"], "--rest_port: 70000 is not a port"),
    (["--model_path", "models/m", "--rest_bind_address", " , "], "--rest_bind_address: no address given"),
    (["--model_path", "models/m", "--shutdown_timeout", "-1"], "--shutdown_timeout: must not be negative"),
    (["--model_path", "models/m", "--log_path", "/nonexistent/dir/fastserve.log"],
     "--log_path: cannot open /nonexistent/dir/fastserve.log"),
])
def test_bad_flags(repo: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], message: str,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(repo)
    if "--model_name" not in flags:
        flags = ["--model_name", "m", *flags]
    assert startup_error(flags, capsys).startswith(message.format(repo=repo))


@pytest.mark.parametrize("flags", [["--rest_port", "abc"], ["--nireq", "two"], ["--log_level", "LOUD"], ["--port", "x"],
                                   ["--no_such_flag"]])
def test_flag_syntax_errors_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(flags)
    assert info.value.code == 2
    assert "fastserve: error:" in capsys.readouterr().err


def test_config_error_type_carries_no_traceback() -> None:
    # The CLI prints str(error): the message must stand alone.
    with pytest.raises(ConfigError) as info:
        parse_shape("(x)", "--shape")
    assert str(info.value).startswith("--shape: ")
