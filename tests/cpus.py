"""What this process may run on: the CPUs of its affinity mask (taskset), which servers inherit."""

from __future__ import annotations

import os

import pytest

CPUS = len(os.sched_getaffinity(0))

# Seen with OpenVINO 2025/2026 on one CPU (taskset -c 0): the CPU plugin, on a single thread,
# returns an empty output instead of raising when shape inference fails at run time (a reshape
# or broadcast to an impossible shape), so a model cannot be made to fail there, and the runs
# that should have failed corrupted memory (a later, unrelated inference crashed the process).
needs_two_cpus = pytest.mark.skipif(
    CPUS < 2, reason="OpenVINO on one thread does not raise for a failed run-time shape inference")
