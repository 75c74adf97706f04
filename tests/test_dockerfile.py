"""The Dockerfile and .dockerignore, checked without a Docker engine (the build machines have none).

The Dockerfile is parsed into instructions; the properties docs/operations.md promises are
asserted on them; the HEALTHCHECK command itself is run against a real server; and the build
context that .dockerignore leaves is computed and compared with what the COPY lines need.
The smoke test with a real engine is documented in docs/operations.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (parser directives too)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last and i.keyword == keyword]


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    found = {}
    for i in instructions:
        if i.keyword == "ARG" and i.stage == -1 and "=" in i.args:
            name, _, value = i.args.partition("=")
            found[name] = value
    return found


def test_slim_python_base_in_every_stage(instructions: list[Instruction]) -> None:
    args = build_args(instructions)
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], i.args.split()[0])
              for i in instructions if i.keyword == "FROM"]
    assert len(images) == 2, images  # a build stage for wheels, a final stage for running
    for image in images:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", image), image


def test_final_stage_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    users = final(instructions, "USER")
    assert users, "the final stage must switch to a non-root user"
    user = users[-1].args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user  # numeric: runAsNonRoot can check it
    assert not gid or (gid.isdigit() and int(gid) != 0), user
    runs = " ".join(i.args for i in final(instructions, "RUN"))
    assert f"--uid {uid}" in runs  # the user exists in /etc/passwd (Python's getpass and friends)


def test_only_runtime_dependencies_are_installed(instructions: list[Instruction]) -> None:
    runs = [i.args for i in final(instructions, "RUN")]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1, runs
    assert "--no-index" in installs[0] and re.search(r"pip install .*\bfastserve(\[cloud\])?'?\s*$", installs[0]), (
        installs[0])
    everything = " ".join(i.args for i in instructions)
    assert "[test]" not in everything and "pytest" not in everything and " -e " not in everything
    assert not re.search(r"apt-get install|build-essential|\bgcc\b", " ".join(runs))
    assert "PIP_NO_CACHE_DIR=1" in " ".join(i.args for i in final(instructions, "ENV"))


def test_the_image_reads_every_cloud_store(instructions: list[Instruction]) -> None:
    """OVMS's s3://, gs://, az:// and azfs:// deployments run in the container: the cloud extra is in
    the wheels and installed, and it holds every store's client library."""
    import tomllib

    from fastserve.storage.store import LIBRARIES

    builds = [i.args for i in instructions if i.stage == 0 and i.keyword == "RUN" and "pip wheel" in i.args]
    assert len(builds) == 1 and "'.[cloud]'" in builds[0], builds
    (install,) = [i.args for i in final(instructions, "RUN") if "pip install" in i.args]
    assert "'fastserve[cloud]'" in install, install
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for scheme, (_, extra) in LIBRARIES.items():
        assert set(extras[extra]) <= set(extras["cloud"]), (scheme, extra)
    assert set(extras["cloud"]) == {req for name in ("s3", "gcs", "azure") for req in extras[name]}


def test_expose_entrypoint_and_healthcheck(instructions: list[Instruction]) -> None:
    assert [i.args for i in final(instructions, "EXPOSE")] == ["8000"]
    (entrypoint,) = final(instructions, "ENTRYPOINT")
    assert exec_form(entrypoint.args) == ["fastserve"]  # docker run IMAGE --config_path ... passes flags
    assert not final(instructions, "CMD")  # no default arguments: none means the bundled demo models
    (health,) = final(instructions, "HEALTHCHECK")
    options, command = health.args.split(" CMD ", 1)
    assert "--timeout=" in options and "--interval=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"] and "FASTSERVE_HEALTH_URL" in argv[2]
    env = " ".join(i.args for i in final(instructions, "ENV"))
    assert "FASTSERVE_HEALTH_URL=http://127.0.0.1:8000/v2/health/live" in env


def health_command(instructions: list[Instruction]) -> list[str]:
    (health,) = final(instructions, "HEALTHCHECK")
    argv = exec_form(health.args.split(" CMD ", 1)[1])
    return [sys.executable, *argv[1:]]  # the image's python is this interpreter here


def test_healthcheck_command_passes_on_a_live_server_and_fails_without_one(
    instructions: list[Instruction], server: ServerProcess
) -> None:
    command = health_command(instructions)
    env = {**os.environ, "FASTSERVE_HEALTH_URL": f"{server.url}/v2/health/live"}
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env["FASTSERVE_HEALTH_URL"] = f"http://127.0.0.1:{port}/v2/health/live"
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode != 0


def test_entrypoint_is_installed_as_a_console_script() -> None:
    script = shutil.which("fastserve", path=str(Path(sys.executable).parent))
    assert script, "pip install puts a `fastserve` script next to python: the image's ENTRYPOINT"
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("fastserve ")


# .dockerignore


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per line, in order, with Docker's rules: last match wins, `!` re-includes,
    `**` spans directories, `*` and `?` do not, and a pattern matching a directory covers its contents."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append((exclude, re.compile(regex)))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exclude, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = exclude
    return not excluded


def context_files() -> set[str]:
    patterns = ignore_patterns()
    found = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            rel = Path(dirpath, name).relative_to(ROOT).as_posix()
            if in_context(rel, patterns):
                found.add(rel)
    return found


def test_dockerignore_leaves_exactly_what_the_build_copies(instructions: list[Instruction]) -> None:
    files = context_files()
    copied = [i.args.split()[:-1] for i in instructions if i.keyword == "COPY" and "--from" not in i.args]
    sources = [s for sources in copied for s in sources]
    assert sources == ["pyproject.toml", "README.md", "fastserve"], sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert any(f == source or f.startswith(source + "/") for f in files), f"COPY {source}: excluded"
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "fastserve").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert package <= files  # every module, the demo models and samples (package data)
    assert {"fastserve/demo/models/config.json", "fastserve/cli.py"} <= files
    outside = {f for f in files if not f.startswith("fastserve/")}
    assert outside == {"pyproject.toml", "README.md"}, outside
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ignore_patterns()
    assert in_context("fastserve/http/protocol.py", patterns)
    assert not in_context("fastserve/http/__pycache__/protocol.cpython-311.pyc", patterns)
    for path in (".git/HEAD", "tests/conftest.py", "bench/run.py", "deploy/kubernetes/deployment.yaml",
                 ".venv/bin/python", "docs/operations.md", "Dockerfile"):
        assert not in_context(path, patterns), path
