"""Retries with exponential backoff for transient store errors, and the errors a store raises.

Rules: a store classifies each failure as Transient (network, 5xx, throttling, content that did
not match what was listed) or raises StorageError at once (credentials, missing bucket or key).
Transient failures are retried ATTEMPTS times, then become a StorageError; every retry is logged
with its reason, never with a secret (stores scrub their messages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from fastserve.errors import ConfigError

log = logging.getLogger("fastserve.storage")
T = TypeVar("T")
# 5 attempts, waiting 0.25, 0.5, 1 and 2 s between them: a store that restarts or a connection
# reset is ridden out (~4 s), a store that is down fails the start-up or the poll within seconds
# (the poll tries again at its next tick, and loaded models keep serving meanwhile).
ATTEMPTS = 5
FIRST_DELAY = 0.25


class StorageError(ConfigError):
    """A remote store failed for good (after retries, or at once for credentials and missing paths)."""


class Transient(Exception):
    """A failure worth retrying; its message says what happened."""


# Failures already logged as warnings: a store that stays down is polled every second, and its
# retries would otherwise fill the log; the same failure is logged again at DEBUG only, until
# the object is read successfully.
_warned: set[tuple[str, str]] = set()


def with_retries(what: str, work: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `work`, retrying Transient failures with backoff; `what` names the object in messages."""
    delay = FIRST_DELAY
    for attempt in range(1, ATTEMPTS + 1):
        try:
            result = work()
        except Transient as exc:
            if attempt == ATTEMPTS:
                raise StorageError(f"{what}: {exc} (gave up after {ATTEMPTS} attempts)") from None
            level = logging.DEBUG if (what, str(exc)) in _warned else logging.WARNING
            _warned.add((what, str(exc)))
            log.log(level, "%s: %s; retrying in %g s (attempt %d of %d)", what, exc, delay, attempt + 1, ATTEMPTS)
            sleep(delay)
            delay *= 2
        else:
            if _warned:
                _warned.difference_update({key for key in _warned if key[0] == what})
            return result
    raise AssertionError("unreachable")
