"""The offline chip behind ``"mock-dwave"``: dwave-system's ``MockDWaveSampler``, seeded per call.

The mock has the real working graph; the anneal is replaced by a classical substitute solver
(:class:`Substitute`) on the embedded problem. Disjoint parts of one submitted BQM (the problems
of a packed call) are solved one by one, as a QPU anneals them in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dimod
import numpy as np

from qsgd.errors import ConfigError

__all__ = ["Substitute", "seeded_mock_class"]


class Substitute:
    """The classical solver a mock runs on the embedded problem, with its per-call keywords."""

    def __init__(self, name: str, num_sweeps: int) -> None:
        from dwave.samplers import SimulatedAnnealingSampler, TabuSampler

        if name not in ("tabu", "neal"):
            raise ConfigError(f"substitute must be 'tabu' or 'neal' (got {name!r})")
        self.name = name
        self.num_sweeps = int(num_sweeps)
        self.sampler: dimod.Sampler = (
            TabuSampler() if name == "tabu" else SimulatedAnnealingSampler()
        )

    def kwargs(self, bqm: dimod.BinaryQuadraticModel, seed: int | None) -> dict[str, Any]:
        if self.name == "tabu":
            return {"num_restarts": 1, "timeout": 1000, "seed": seed}
        from qsgd.samplers.dimod_backends import ising_beta_range

        return {"num_sweeps": self.num_sweeps, "seed": seed, "beta_range": ising_beta_range(bqm)}


_SEEDED_MOCK: type | None = None


def seeded_mock_class() -> type:
    """dwave-system's ``MockDWaveSampler`` with a per-call ``seed`` for its substitute solver."""
    global _SEEDED_MOCK
    if _SEEDED_MOCK is not None:
        return _SEEDED_MOCK
    from dwave.system.testing import MockDWaveSampler

    class SeededMockDWaveSampler(MockDWaveSampler):
        """The mock with a per-call ``seed``; disjoint parts of a BQM are solved one by one."""

        def __init__(self, *args: Any, substitute_sampler: Substitute, **kwargs: Any) -> None:
            self._substitute = substitute_sampler
            super().__init__(*args, substitute_sampler=substitute_sampler.sampler, **kwargs)

        def sample(self, bqm, seed=None, **kwargs):  # type: ignore[override]
            kept = {k: v for k, v in kwargs.items() if k in self.mocked_parameters}
            parts = [set(c) for c in dimod.connected_components(bqm)]
            if len(parts) <= 1:
                self.substitute_kwargs = self._substitute.kwargs(bqm, seed)
                return super().sample(bqm, **kept)
            return _sample_parts(self, super().sample, bqm, parts, seed, kept)

    _SEEDED_MOCK = SeededMockDWaveSampler
    return _SEEDED_MOCK


def _sample_parts(mock: Any, sample: Callable[..., Any], bqm, parts, seed, kept) -> dimod.SampleSet:
    """Each connected part solved on its own, as a QPU anneals them in parallel.

    Several problems packed into one call are disjoint parts of one BQM; a classical substitute
    run on the union would spread its effort over all of them and do worse per problem than the
    hardware, which anneals every qubit at once.
    """
    from qsgd.samplers.base import problem_seeds

    linear, (row, col, quad), _ = bqm.to_numpy_vectors(variable_order=list(bqm.variables))
    labels = list(bqm.variables)
    comp_of = np.empty(len(labels), dtype=np.int64)
    index = {v: i for i, v in enumerate(labels)}
    for c, part in enumerate(parts):
        comp_of[[index[v] for v in part]] = c
    columns, blocks, info = [], [], None
    for c, part_seed in enumerate(problem_seeds(seed, len(parts))):
        cols = np.flatnonzero(comp_of == c)
        pos = np.full(len(labels), -1, dtype=np.int64)
        pos[cols] = np.arange(len(cols))
        keep = comp_of[row] == c
        sub = dimod.BinaryQuadraticModel.from_numpy_vectors(
            linear[cols],
            (pos[row[keep]], pos[col[keep]], quad[keep]),
            0.0,
            bqm.vartype,
            variable_order=[labels[i] for i in cols],
        )
        mock.substitute_kwargs = mock._substitute.kwargs(sub, part_seed)
        ss = sample(sub, **kept)
        if info is None:
            info = dict(ss.info)
        rec = ss.record.sample
        if np.any(ss.record.num_occurrences != 1):
            rec = np.repeat(rec, ss.record.num_occurrences, axis=0)
        blocks.append(rec[:, [ss.variables.index(labels[i]) for i in cols]])
        columns.append(cols)
    reads = min(len(b) for b in blocks)
    arr = np.empty((reads, len(labels)), dtype=np.int8)
    for cols, block in zip(columns, blocks, strict=True):
        arr[:, cols] = block[:reads]
    out = dimod.SampleSet.from_samples_bqm((arr, labels), bqm)
    out.info.update(info or {})
    return out
