"""fastserve keeps OpenVINO's usage reporting off unless the user chose it (fastserve/telemetry.py).

Each check runs in a fresh interpreter with an empty HOME (no consent file) and none of the CI
variables that make the telemetry package decline by itself, so the control case shows what
`import openvino` would do without fastserve. The control only asks the checker; it never
imports openvino, so nothing is sent from here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino_telemetry") is None,
                                reason="openvino_telemetry is not installed: nothing to keep quiet")

ASK = ("from openvino_telemetry.utils.opt_in_checker import OptInChecker; "
       "print(OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True).name)")


def run(code: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_without_fastserve_no_consent_file_counts_as_consent(tmp_path: Path) -> None:
    assert run(ASK, tmp_path) == "NO_FILE"  # what openvino's converter takes as a yes


def test_with_fastserve_imported_first_the_checker_declines(tmp_path: Path) -> None:
    assert run("import fastserve; " + ASK, tmp_path) == "DECLINED"


def test_importing_openvino_after_fastserve_sends_and_writes_nothing(tmp_path: Path) -> None:
    code = "import fastserve, openvino; from openvino_telemetry import Telemetry; print(Telemetry().consent)"
    assert run(code, tmp_path) == "False"
    assert list(tmp_path.iterdir()) == []  # no ~/intel/openvino_ga_cid: the sending path never ran


def test_a_users_own_choice_still_decides(tmp_path: Path) -> None:
    consent = tmp_path / "intel" / "openvino_telemetry"
    consent.parent.mkdir()
    consent.write_text("1")
    assert run("import fastserve; " + ASK, tmp_path) == "ACCEPTED"
