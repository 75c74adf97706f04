"""Version policies (OVMS model_version_policy) and version folder discovery, without compiling anything."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastserve.config import parse_version_policy
from fastserve.errors import ConfigError
from fastserve.models.loader import find_versions, model_file_in, select_versions
from fastserve.settings import ModelSettings, VersionPolicy


def policy(text: str) -> VersionPolicy:
    return parse_version_policy(text, "where")


@pytest.mark.parametrize(
    ("text", "available", "chosen"),
    [
        (None, [1, 2, 3], [3]),  # OVMS default: latest 1
        ('{"latest": {}}', [3, 1, 2], [3]),
        ('{"latest": {"num_versions": 2}}', [1, 2, 3], [2, 3]),
        ('{"latest": {"num_versions": 5}}', [2, 7], [2, 7]),  # more than on disk: all of them
        ('{"specific": {"versions": [1, 3]}}', [1, 2, 3], [1, 3]),
        ('{"specific": {"versions": [3, 3, 1]}}', [1, 2, 3], [1, 3]),
        ('{"specific": {"versions": [2, 9]}}', [1, 2, 3], [2]),  # missing ones are left out
        ('{"specific": {"versions": [9]}}', [1, 2, 3], []),
        ('{"all": {}}', [10, 2, 1], [1, 2, 10]),  # numeric order, not text order
        ('{"latest": {"num_versions": 1}}', [9, 10], [10]),
    ],
)
def test_policy_selects(text: str | None, available: list[int], chosen: list[int]) -> None:
    assert policy(text).select(available) == chosen


def test_policy_accepts_an_object_as_in_config_json() -> None:
    assert parse_version_policy({"specific": {"versions": [2]}}, "x") == VersionPolicy("specific", versions=(2,))
    assert parse_version_policy({"all": {}}, "x").describe() == "all"
    assert parse_version_policy({"latest": {"num_versions": 3}}, "x").describe() == "latest 3"
    assert parse_version_policy({"specific": {"versions": [4, 1]}}, "x").describe() == "specific [1, 4]"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("latest", "not valid JSON"),
        ('"latest"', "must be one of"),
        ("{}", "must be one of"),
        ('{"latest": {}, "all": {}}', "must be one of"),
        ('{"newest": {}}', "unknown policy 'newest'"),
        ('{"latest": 1}', "where.latest: must be an object"),
        ('{"latest": {"num_versions": 0}}', "where.latest.num_versions: must be an integer >= 1"),
        ('{"latest": {"num_versions": -2}}', "num_versions: must be an integer >= 1"),
        ('{"latest": {"num_versions": "2"}}', "num_versions: must be an integer >= 1"),
        ('{"latest": {"num_versions": true}}', "num_versions: must be an integer >= 1"),
        ('{"latest": {"num": 1}}', "where.latest: unknown key 'num'"),
        ('{"specific": {}}', "where.specific.versions: required"),
        ('{"specific": {"versions": []}}', "where.specific.versions: required"),
        ('{"specific": {"versions": 1}}', "where.specific.versions: required"),
        ('{"specific": {"versions": [0]}}', "versions must be integers > 0"),
        ('{"specific": {"versions": ["1"]}}', "versions must be integers > 0"),
        ('{"specific": {"versions": [1.5]}}', "versions must be integers > 0"),
        ('{"specific": {"versions": [1], "latest": 2}}', "where.specific: unknown key 'latest'"),
        ('{"all": {"num_versions": 1}}', "where.all: takes no fields"),
        ('{"all": []}', "where.all: must be an object"),
    ],
)
def test_bad_policy_forms(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^where") as info:
        policy(value)
    assert message in str(info.value)


# Version folders (only names and files matter here: nothing is read or compiled)


def model(base: Path, text: str | None = None) -> ModelSettings:
    return ModelSettings(name="m", base_path=base, version_policy=policy(text), source="cfg.json: list[0].config")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_versions_are_positive_integer_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    xml1 = touch(tmp_path / "1" / "model.xml")
    onnx2 = touch(tmp_path / "2" / "model.onnx")
    other10 = touch(tmp_path / "10" / "resnet.xml")  # the only model file in the folder
    touch(tmp_path / "0" / "model.xml")  # 0 is not a version
    touch(tmp_path / "latest" / "model.xml")  # nor is a name
    touch(tmp_path / "3" / "readme.txt")  # a version folder without a model file: skipped, with a warning
    touch(tmp_path / "7" / "a.xml")
    touch(tmp_path / "7" / "b.xml")  # two candidates and no model.xml: ambiguous, skipped
    touch(tmp_path / "5.xml")  # files next to the version folders are ignored
    with caplog.at_level(logging.WARNING, logger="fastserve.models"):
        assert find_versions(model(tmp_path)) == {1: xml1, 2: onnx2, 10: other10}
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert str(tmp_path / "3") in skipped and str(tmp_path / "7") in skipped


def test_model_xml_wins_over_other_files(tmp_path: Path) -> None:
    onnx = touch(tmp_path / "model.onnx")
    touch(tmp_path / "other.xml")
    assert model_file_in(tmp_path) == onnx
    xml = touch(tmp_path / "model.xml")
    assert model_file_in(tmp_path) == xml


def test_leading_zeros_name_the_same_version(tmp_path: Path) -> None:
    touch(tmp_path / "1" / "model.xml")
    touch(tmp_path / "01" / "model.xml")
    with pytest.raises(ConfigError, match=r"cfg.json: list\[0\].config.base_path: .* both version 1"):
        find_versions(model(tmp_path))


def test_single_model_file_is_version_1(tmp_path: Path) -> None:
    xml = touch(tmp_path / "net.xml")
    onnx = touch(tmp_path / "net.onnx")
    assert select_versions(model(xml)) == {1: xml}
    assert select_versions(model(onnx, '{"all": {}}')) == {1: onnx}
    with pytest.raises(ConfigError, match=r"base_path: .*net.txt is not an OpenVINO IR \(.xml\) or ONNX"):
        select_versions(model(touch(tmp_path / "net.txt")))


def test_select_versions_applies_the_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = {v: touch(tmp_path / str(v) / "model.xml") for v in (1, 2, 3)}
    assert select_versions(model(tmp_path)) == {3: files[3]}
    assert select_versions(model(tmp_path, '{"latest": {"num_versions": 2}}')) == {2: files[2], 3: files[3]}
    assert select_versions(model(tmp_path, '{"all": {}}')) == files
    with caplog.at_level(logging.WARNING, logger="fastserve.models"):
        assert select_versions(model(tmp_path, '{"specific": {"versions": [1, 4]}}')) == {1: files[1]}
    assert "[4]" in caplog.text  # a wanted version that is not on disk is reported


def test_policy_matching_nothing_names_the_field(tmp_path: Path) -> None:
    touch(tmp_path / "1" / "model.xml")
    touch(tmp_path / "2" / "model.xml")
    with pytest.raises(ConfigError) as info:
        select_versions(model(tmp_path, '{"specific": {"versions": [5]}}'))
    assert str(info.value) == (
        "cfg.json: list[0].config.model_version_policy: model m: specific [5] matches none of the versions on disk "
        "[1, 2]"
    )


def test_no_version_folders_names_the_field(tmp_path: Path) -> None:
    touch(tmp_path / "model.xml")  # a model directly in base_path is not a version (OVMS needs <version>/)
    (tmp_path / "abc").mkdir()
    with pytest.raises(ConfigError, match=r"^cfg.json: list\[0\].config.base_path: model m: no version folder"):
        select_versions(model(tmp_path))


def test_cli_models_name_the_flags(tmp_path: Path) -> None:
    touch(tmp_path / "1" / "model.xml")
    cli_model = ModelSettings(name="m", base_path=tmp_path, version_policy=policy('{"specific": {"versions": [2]}}'))
    with pytest.raises(ConfigError, match="^--model_version_policy: model m"):
        select_versions(cli_model)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="^--model_path: model m: no version folder"):
        select_versions(ModelSettings(name="m", base_path=empty))
