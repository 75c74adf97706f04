"""Answers stay each request's own after an infer request has run a large (shared, >= 256 KiB) input:
the slot that wrapped a request's own memory must not feed it to later, smaller requests."""

from __future__ import annotations

import numpy as np

from tests.e2e.test_concurrency import CLIENTS, answers, exchange, heavy_reference, request
from tests.serverproc import ServerProcess


def test_small_requests_after_a_large_one_get_their_own_answers(server: ServerProcess) -> None:
    rng = np.random.default_rng(12)
    big = [np.round(rng.standard_normal((8, 3, 64, 64)), 3).astype(np.float32) for _ in range(4)]
    got_big = np.concatenate(answers(exchange(server.port, [("/v2/models/heavy/infer", request(i, "x", x))
                                                            for i, x in enumerate(big)])))
    np.testing.assert_allclose(got_big, heavy_reference([b[i:i + 1] for b in big for i in range(8)]),
                               rtol=1e-4, atol=1e-5)
    inputs = [np.round(rng.standard_normal((1, 3, 64, 64)), 3).astype(np.float32) for _ in range(CLIENTS)]
    replies = exchange(server.port, [("/v2/models/heavy/infer", request(i, "x", x)) for i, x in enumerate(inputs)])
    got = np.concatenate(answers(replies))
    expected = heavy_reference(inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
