"""Live-hardware tests: they run only with D-Wave credentials and reach the real QPU.

CI and a fresh clone have no credentials, so everything here is skipped there; run them with
``DWAVE_API_TOKEN=... pytest tests/live`` (or after ``dwave config create``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("dwave.system")

from qsgd.samplers import get_sampler, solve_batch  # noqa: E402
from qsgd.testing import random_batch  # noqa: E402


def _has_credentials() -> bool:
    if os.environ.get("DWAVE_API_TOKEN"):
        return True
    try:
        from dwave.cloud.config import load_config

        return bool(load_config().get("token"))
    except Exception:
        return False


@pytest.mark.live_dwave
@pytest.mark.skipif(
    not _has_credentials(), reason="no D-Wave credentials (dwave config create / DWAVE_API_TOKEN)"
)
def test_live_qpu_solves_a_small_batch():  # pragma: no cover - needs hardware access
    batch = random_batch(8, 2, seed=0)
    res = solve_batch(get_sampler("dwave"), batch, num_reads=50)
    assert res.samples.shape == (2, 50, 8)
    assert 0.0 <= res.info["chain_break_fraction"] <= 1.0
    np.testing.assert_allclose(res.energies, batch.energies(res.samples))
