"""OpenVINO's Python package reports every import to a web analytics service; fastserve keeps it quiet.

Rules: `import openvino` loads its model converter, whose package start-up sends a usage event
(and writes ~/intel/openvino_ga_cid) unless a consent file says otherwise; with no file it counts
as consent. A model server must not call out on every start (OVMS, in C++, sends nothing), so
unless the user has made a choice in that file, fastserve answers "declined" for them. The patch
is applied when openvino_telemetry is first imported, by an import hook, so that importing
fastserve stays light (the telemetry package alone takes ~50 ms to import).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

CHECKER = "openvino_telemetry.utils.opt_in_checker"


def decline_unless_chosen(module: ModuleType) -> None:
    """OptInChecker.check says DECLINED while no consent file exists; a user's own file still decides."""
    checker = module.OptInChecker
    original = checker.check
    if getattr(original, "fastserve_quiet", False):
        return

    def check(self: Any, enable_opt_in_dialog: bool, disable_in_ci: bool = False) -> Any:
        consent = self.consent_file() if self.consent_file_base_dir() is not None else None
        if consent is None or not os.path.exists(consent):
            return module.ConsentCheckResult.DECLINED
        return original(self, enable_opt_in_dialog, disable_in_ci)

    check.fastserve_quiet = True  # type: ignore[attr-defined]
    checker.check = check


class _Hook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of the checker module to patch it once it runs."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != CHECKER:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                _patch_after_exec(spec.loader)
                return spec
        return None


def _patch_after_exec(loader: Any) -> None:
    run = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        run(module)
        decline_unless_chosen(module)

    loader.exec_module = exec_module


def install() -> None:
    if CHECKER in sys.modules:  # imported before fastserve: patch it now (nothing was sent yet unless
        decline_unless_chosen(sys.modules[CHECKER])  # openvino itself came first)
    elif not any(isinstance(finder, _Hook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
