"""Retries with exponential backoff for transient store errors, and the errors a store raises.

Rules: a store classifies each failure as Transient (network, 5xx, throttling, content that did
not match what was listed) or raises StorageError at once (credentials, missing bucket or key).
Transient failures are retried ATTEMPTS times, then become a StorageError; every retry is logged
with its reason, never with a secret (stores scrub their messages). Every store's client waits
CONNECT_TIMEOUT for a connection and read_timeout() for each read, then the call fails as
Transient (a stalled store is retried like a broken connection).
"""

from __future__ import annotations

import logging
import math
import os
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
# A connection must open within 5 s; a read may wait 30 s for data (a slow store), then the call is
# retried. OVMS has no setting for these; the read timeout can be changed through the environment
# (tests shrink it to see a stalled store given up within seconds; operators of a very slow store).
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 30.0
READ_TIMEOUT_VARIABLE = "FASTSERVE_STORAGE_READ_TIMEOUT_S"


class StorageError(ConfigError):
    """A remote store failed for good (after retries, or at once for credentials and missing paths)."""


class Transient(Exception):
    """A failure worth retrying; its message says what happened."""


def read_timeout() -> float:
    """Seconds a store's read may wait for data: READ_TIMEOUT, or FASTSERVE_STORAGE_READ_TIMEOUT_S."""
    text = os.environ.get(READ_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return READ_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:  # NaN fails too
        raise StorageError(f"{READ_TIMEOUT_VARIABLE}={text!r}: must be a number of seconds above 0, at most 3600")
    return value


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
