"""Hot reload in real server processes: new and removed version folders, config.json edits, broken
versions and configs, and OVMS's config API (GET /v1/config, POST /v1/config/reload).

Two servers: one polls every second (--file_system_poll_wait_seconds 1) and serves a single model
from the flags while a client loops on it; the other does not poll (0) and reloads only on POST,
so each test there knows exactly when a change is applied. Each test works on models of its own.
New versions are written next to the model and renamed into place, as an operator should.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.modelzoo import add_model, save, versioned_model
from tests.netstate import wait_read_by_server
from tests.rawhttp import Conn, Reply, get, post_json
from tests.serverproc import ServerProcess
from tests.slowwork import spin_model, spin_request, spin_rows

WAIT = 30.0  # seconds: upper bound for a change to be picked up / requests to finish
BROKEN_XML = '<?xml version="1.0"?>\n<net name="broken" version="11">'
ADD_BODY = {"inputs": [{"name": "a", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
                       {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10}]}


def put_version(model: Any, base: Path, version: int) -> None:
    """Write the version elsewhere, then rename it into base/<version> (never seen half written)."""
    scratch = base.parent / f".{base.name}-{version}.tmp"
    save(model, scratch, version)
    (scratch / str(version)).rename(base / str(version))
    shutil.rmtree(scratch)


def versioned_body(x: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]}


def served_version(reply: Reply, x: list[float]) -> int:
    """The version that answered, checked against what it computes (y = x + version)."""
    assert reply.status == 200, reply.body
    doc = reply.json()
    version = int(doc["model_version"])
    assert doc["outputs"][0]["data"] == [v + version for v in x], doc
    return version


def states(port: int, name: str) -> dict[int, tuple[str, str]]:
    reply = get(port, "/v1/config")
    assert reply.status == 200, reply.body
    return {int(s["version"]): (s["state"], s["status"]["error_code"])
            for s in reply.json()[name]["model_version_status"]}


def wait_for(check: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def reload(port: int) -> Reply:
    with Conn(port, timeout=WAIT) as conn:
        return conn.request("POST", "/v1/config/reload")


# Polling: a new version folder while a client loops


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    base = tmp_path_factory.mktemp("polled") / "versioned"
    save(versioned_model(1), base, 1)
    with ServerProcess("--model_name", "versioned", "--model_path", str(base),
                       "--file_system_poll_wait_seconds", "1") as proc:
        yield proc, base


class Looper:
    """Clients inferring on `versioned` (latest version) in a loop until stopped; every answer kept."""

    def __init__(self, port: int, clients: int = 2) -> None:
        self.port = port
        self.seen: list[int] = []
        self.failures: list[Any] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(clients)]
        for thread in self.threads:
            thread.start()

    def _loop(self, index: int) -> None:
        x = [float(index), 1.0, 2.0, 3.0]
        try:
            with Conn(self.port) as conn:
                while not self.stop.is_set():
                    reply = conn.request("POST", "/v2/models/versioned/infer", json.dumps(versioned_body(x)).encode())
                    try:
                        self.seen.append(served_version(reply, x))
                    except AssertionError as exc:
                        self.failures.append(exc)
        except OSError as exc:
            self.failures.append(exc)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(WAIT)


def test_new_version_folder_is_served_without_failing_a_request(polled: tuple[ServerProcess, Path]) -> None:
    server, base = polled
    looper = Looper(server.port)
    try:
        assert wait_for(lambda: len(looper.seen) > 20)
        put_version(versioned_model(2), base, 2)
        assert wait_for(lambda: looper.seen and looper.seen[-1] == 2), "version 2 was never served"
        assert wait_for(lambda: len(looper.seen) > looper.seen.index(2) + 12)  # and it keeps serving
    finally:
        looper.join()
    assert not looper.failures, looper.failures[:3]
    first_2 = looper.seen.index(2)
    assert set(looper.seen[:first_2]) == {1} and len(looper.seen) > first_2 + 10
    assert set(looper.seen[first_2 + 2:]) == {2}  # a request or two may have taken v1 just before the swap
    assert wait_for(lambda: states(server.port, "versioned") == {1: ("END", "OK"), 2: ("AVAILABLE", "OK")})
    log = server.log()
    assert log.index("loaded model versioned version 2") < log.index("model versioned version 1 unloaded")
    assert get(server.port, "/v2/models/versioned/versions/1").status == 404
    assert get(server.port, "/v2/models/versioned").json()["versions"] == ["2"]


def test_broken_version_folder_is_logged_once_and_the_old_one_serves(polled: tuple[ServerProcess, Path]) -> None:
    server, base = polled
    (base / ".broken").mkdir()
    (base / ".broken" / "model.xml").write_text(BROKEN_XML)
    (base / ".broken").rename(base / "3")
    try:
        assert wait_for(lambda: states(server.port, "versioned").get(3) == ("LOADING", "UNKNOWN"))
        time.sleep(2.5)  # two more polls: no retry, no new log line
        x = [1.0, 1.0, 1.0, 1.0]
        assert served_version(post_json(server.port, "/v2/models/versioned/infer", versioned_body(x)), x) == 2
        assert states(server.port, "versioned")[2] == ("AVAILABLE", "OK")
        errors = [line for line in server.log().splitlines() if "[ERROR]" in line]
        assert len(errors) == 1, errors
        assert "model versioned version 3: cannot read" in errors[0] and "keeps serving" in errors[0]
    finally:
        shutil.rmtree(base / "3")


# Reload on demand: POST /v1/config/reload, nothing polled


def write_config(path: Path, *models: dict[str, Any], pipelines: list[Any] | None = None) -> None:
    doc: dict[str, Any] = {"model_config_list": [{"config": m} for m in models]}
    if pipelines is not None:
        doc["pipeline_config_list"] = pipelines
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(doc))
    scratch.rename(path)  # atomically, as an operator should


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("on-demand")
    save(add_model(), root / "add", 1)
    save(versioned_model(1), root / "versioned", 1)
    save(spin_model(), root / "spin", 1)
    save(spin_model(), root / "spin", 2)
    return root


BASE_MODELS = ({"name": "versioned", "base_path": "versioned"},
               {"name": "spin", "base_path": "spin", "model_version_policy": {"all": {}}})


@pytest.fixture(scope="module")
def manual(repo: Path) -> Iterator[ServerProcess]:
    write_config(repo / "config.json", *BASE_MODELS)
    with ServerProcess("--config_path", str(repo / "config.json"), "--file_system_poll_wait_seconds", "0") as proc:
        yield proc


def test_config_status_is_ovms_json_byte_for_byte(manual: ServerProcess) -> None:
    reply = get(manual.port, "/v1/config")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    entry = ('"{name}" : \n{{\n "model_version_status": [\n{versions}\n ]\n}}')
    version = ('  {{\n   "version": "{v}",\n   "state": "AVAILABLE",\n   "status": {{\n'
               '    "error_code": "OK",\n    "error_message": "OK"\n   }}\n  }}')
    expected = "{\n" + ",\n".join([
        entry.format(name="spin", versions=",\n".join(version.format(v=v) for v in (1, 2))),
        entry.format(name="versioned", versions=version.format(v=1)),
    ]) + "\n}"
    assert reply.body.decode() == expected


def test_reload_without_changes_answers_200_with_the_status(manual: ServerProcess) -> None:
    reply = reload(manual.port)
    assert reply.status == 200, reply.body
    assert reply.body == get(manual.port, "/v1/config").body


def test_removed_version_retires_after_its_in_flight_requests(manual: ServerProcess, repo: Path) -> None:
    rows = spin_rows(0.5)  # each inference sized to 0.5 s here; 6 of them queue on version 2's requests
    request = spin_request(rows, version=2)
    conns = [Conn(manual.port, timeout=WAIT) for _ in range(6)]
    for conn in conns:
        conn.send(request)
    wait_read_by_server([conn.sock for conn in conns])  # all 6 are in: they hold version 2
    shutil.rmtree(repo / "spin" / "2")
    reply = reload(manual.port)
    assert reply.status == 201, reply.body
    assert reply.json()["spin"]["model_version_status"][1]["state"] == "UNLOADING"
    assert get(manual.port, "/v2/models/spin/versions/2/ready").status == 404  # no new request gets it
    for conn in conns:
        answer = conn.read()
        assert answer.status == 200, answer.body
        assert answer.json()["model_version"] == "2" and answer.json()["outputs"][0]["shape"] == [rows, 1]
        conn.close()
    assert wait_for(lambda: states(manual.port, "spin") == {1: ("AVAILABLE", "OK"), 2: ("END", "OK")})
    missing = post_json(manual.port, "/v2/models/spin/versions/2/infer", {"inputs": []})
    assert missing.status == 404 and missing.json() == {"error": "Model with requested version is not found"}
    assert get(manual.port, "/v2/models/spin").json()["versions"] == ["1"]


def test_config_edits_add_and_remove_a_model(manual: ServerProcess, repo: Path) -> None:
    config = repo / "config.json"
    assert post_json(manual.port, "/v2/models/add/infer", ADD_BODY).status == 404
    write_config(config, *BASE_MODELS, {"name": "add", "base_path": "add"})
    reply = reload(manual.port)
    assert reply.status == 201, reply.body
    assert reply.json()["add"]["model_version_status"][0]["state"] == "AVAILABLE"
    added = post_json(manual.port, "/v2/models/add/infer", ADD_BODY)
    assert added.status == 200, added.body
    outputs = {o["name"]: o["data"] for o in added.json()["outputs"]}
    assert outputs["sum"] == [v + 1.0 for v in range(10)]
    assert reload(manual.port).status == 200  # applied already
    write_config(config, *BASE_MODELS)
    assert reload(manual.port).status == 201
    gone = post_json(manual.port, "/v2/models/add/infer", ADD_BODY)
    assert gone.status == 404 and gone.json() == {"error": "Model with requested name is not found"}
    assert states(manual.port, "add") == {1: ("END", "OK")}
    assert get(manual.port, "/v2/health/ready").status == 200


def test_broken_config_changes_nothing_and_reload_says_so(manual: ServerProcess, repo: Path) -> None:
    config = repo / "config.json"
    good = config.read_bytes()
    before = get(manual.port, "/v1/config").body
    try:
        for broken in (b'{"model_config_list": [', b'{"model_config_list": [], "surprise": 1}'):
            config.write_bytes(broken)
            reply = reload(manual.port)
            assert reply.status == 412, reply.body
            assert reply.json() == {"error": "Reloading config file failed. Check server logs for more info."}
            assert get(manual.port, "/v1/config").body == before
            x = [0.0, 0.0, 0.0, 0.0]
            assert served_version(post_json(manual.port, "/v2/models/versioned/infer", versioned_body(x)), x) == 1
        assert re.search(r"\[ERROR\]\[fastserve\.reload\] config reload: .*unknown key 'surprise'.*"
                         r"still serving the previous configuration", manual.log())
        config.unlink()
        reply = reload(manual.port)
        assert reply.status == 500 and reply.json() == {"error": "Config file not found or cannot open."}
    finally:
        config.write_bytes(good)
    assert reload(manual.port).status == 200  # the same bytes as before: nothing to apply


def test_config_naming_a_folder_that_appears_later_applies_then(manual: ServerProcess, repo: Path) -> None:
    config = repo / "config.json"
    write_config(config, *BASE_MODELS, {"name": "late", "base_path": "late"})
    reply = reload(manual.port)
    assert reply.status == 412, reply.body  # base_path does not exist: the config is refused as a whole
    assert reload(manual.port).status == 412  # the same bytes, still refused, logged once
    assert len(re.findall(r"late does not exist", manual.log())) == 1
    save(add_model(), repo / ".late", 1)
    (repo / ".late").rename(repo / "late")
    reply = reload(manual.port)  # config.json did not change, the folder did
    assert reply.status == 201, reply.body
    assert post_json(manual.port, "/v2/models/late/infer", ADD_BODY).status == 200
    write_config(config, *BASE_MODELS)
    assert reload(manual.port).status == 201


def test_new_model_that_fails_to_load_is_reported_and_others_apply(manual: ServerProcess, repo: Path) -> None:
    config = repo / "config.json"
    (repo / "ghost" / "1").mkdir(parents=True)
    (repo / "ghost" / "1" / "model.xml").write_text(BROKEN_XML)
    write_config(config, *BASE_MODELS, {"name": "ghost", "base_path": "ghost"}, {"name": "add", "base_path": "add"})
    reply = reload(manual.port)
    assert reply.status == 500, reply.body
    assert reply.json() == {"error": "Reloading config file failed. Check server logs for more info."}
    assert post_json(manual.port, "/v2/models/add/infer", ADD_BODY).status == 200  # the rest applied
    ghost = post_json(manual.port, "/v2/models/ghost/infer", ADD_BODY)
    assert ghost.status == 404 and ghost.json() == {"error": "Model with requested version is not loaded yet"}
    assert states(manual.port, "ghost") == {1: ("LOADING", "UNKNOWN")}
    assert reload(manual.port).status == 500  # still wanted, still broken
    write_config(config, *BASE_MODELS)
    assert reload(manual.port).status == 201
    assert states(manual.port, "ghost") == {1: ("END", "OK")}
    assert post_json(manual.port, "/v2/models/ghost/infer", ADD_BODY).status == 404


def test_broken_reconfiguration_keeps_the_old_settings(manual: ServerProcess, repo: Path) -> None:
    config = repo / "config.json"
    versioned, spin = BASE_MODELS
    write_config(config, {**versioned, "shape": "(1,4,4)"}, spin)  # the model's input has 2 dims
    reply = reload(manual.port)
    assert reply.status == 500, reply.body
    assert reply.json() == {"error": "Reloading config file failed. Check server logs for more info."}
    x = [1.0, 2.0, 3.0, 4.0]
    assert served_version(post_json(manual.port, "/v2/models/versioned/infer", versioned_body(x)), x) == 1
    assert re.search(r"\[ERROR\].*\(1,4,4\) has 3 dims, but input x of model versioned has 2.*keeps serving",
                     manual.log())
    assert reload(manual.port).status == 500  # still wanted, still failing: reported again, not compiled again
    assert len(re.findall(r"\(1,4,4\) has 3 dims", manual.log())) == 1
    # a good reconfiguration reloads every version: here the policy now serves v1 and a new v2
    put_version(versioned_model(2), repo / "versioned", 2)
    write_config(config, {**versioned, "model_version_policy": {"all": {}}}, spin)
    reply = reload(manual.port)
    assert reply.status == 201, reply.body
    for version in (1, 2):
        got = post_json(manual.port, f"/v2/models/versioned/versions/{version}/infer", versioned_body(x))
        assert served_version(got, x) == version
    assert states(manual.port, "versioned") == {1: ("AVAILABLE", "OK"), 2: ("AVAILABLE", "OK")}
    assert len(re.findall(r"loaded model versioned version 1 ", manual.log())) == 2  # compiled again


def test_pipelines_follow_config_edits(manual: ServerProcess, repo: Path) -> None:
    config = repo / "config.json"
    models = (*BASE_MODELS, {"name": "add", "base_path": "add"})
    pipeline = {
        "name": "adder", "inputs": ["a", "b"],
        "nodes": [{"name": "n", "model_name": "add", "type": "DL model",
                   "inputs": [{"a": {"node_name": "request", "data_item": "a"}},
                              {"b": {"node_name": "request", "data_item": "b"}}],
                   "outputs": [{"data_item": "sum", "alias": "s"}]}],
        "outputs": [{"total": {"node_name": "n", "data_item": "s"}}],
    }
    write_config(config, *models, pipelines=[pipeline])
    reply = reload(manual.port)
    assert reply.status == 201, reply.body
    assert reply.json()["adder"]["model_version_status"][0]["state"] == "AVAILABLE"
    answer = post_json(manual.port, "/v2/models/adder/infer", ADD_BODY)
    assert answer.status == 200, answer.body
    assert answer.json()["outputs"][0]["name"] == "total"
    write_config(config, *models, pipelines=[])
    assert reload(manual.port).status == 201
    assert post_json(manual.port, "/v2/models/adder/infer", ADD_BODY).status == 404
    assert states(manual.port, "adder") == {1: ("END", "OK")}
