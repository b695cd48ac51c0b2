"""dimod's own sampler conformance suite, run against every registered backend.

``dimod.testing.load_sampler_bqm_tests`` samples small SPIN and BINARY problems (empty, one
variable, linear-only, dense, with offsets) and checks vartype, variable order, energies and
the sample-set contract; ``assert_sampler_api`` checks ``parameters`` / ``properties``. The
real ``dwave`` backend needs a QPU and is covered by its ``mock-dwave`` twin, which runs the same
code path on ``MockDWaveSampler``.
"""

from __future__ import annotations

import os
import unittest

import dimod.testing
import pytest

from qsgd.samplers.registry import available_backends, get_sampler

OFFLINE = [b for b in available_backends() if b not in ("dwave", "dwave-packed", "dwave-hybrid")]


def _suite(name: str) -> type[unittest.TestCase]:
    sampler = get_sampler(name)

    @dimod.testing.load_sampler_bqm_tests(sampler, max_num_variables=12)
    class Conformance(unittest.TestCase):
        def test_sampler_api(self) -> None:
            dimod.testing.assert_sampler_api(sampler)

    Conformance.__name__ = f"Conformance_{name.replace('-', '_')}"
    return Conformance


@pytest.mark.parametrize("name", OFFLINE)
def test_dimod_conformance_suite(name):
    cls = _suite(name)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(cls)
    with open(os.devnull, "w") as sink:
        result = unittest.TextTestRunner(verbosity=0, stream=sink).run(suite)
    problems = [
        f"{t.id().rsplit('.', 1)[-1]}: {err.strip().splitlines()[-1]}"
        for t, err in result.failures + result.errors
    ]
    assert result.testsRun >= 30
    assert not problems, f"{name}: {len(problems)} of {result.testsRun} failed:\n" + "\n".join(
        problems
    )
