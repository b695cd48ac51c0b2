"""The ``"blockwise"`` composite: problems larger than a block size solved block by block.

A backend that cannot take a whole problem (``"exact"`` beyond 24 spins, a QPU beyond its
largest clique) still solves it as one sweep of block-coordinate descent
(:func:`qsgd.qubo.solve_blockwise`): each block of at most ``max_block_vars`` spins is solved
by the child with the other spins fixed, and a block's spins are kept only where they do not
raise the energy. Every block solve gets the same run settings, ``seed`` included, as the
QP-SBGD optimizer's own block-wise path.

Example:
    >>> import numpy as np
    >>> from qsgd.ising import IsingBatch
    >>> from qsgd.samplers.registry import compose, get_sampler, solve_batch
    >>> b = IsingBatch.from_arrays(np.array([[1.0, -1.0, 1.0, -1.0]]), np.zeros((4, 4)))
    >>> solve_batch(compose(get_sampler("exact"), [("blockwise", {"max_block_vars": 2})]), b).best.tolist()
    [[-1, 1, -1, 1]]
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import dimod
import numpy as np

from qsgd.checks import positive_int
from qsgd.errors import ConfigError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import BatchResult, Sampler, backend_label

__all__ = ["BlockwiseComposite"]


class BlockwiseComposite(Sampler, dimod.ComposedSampler):
    """Composite: solve problems of more than ``max_block_vars`` spins block by block.

    Args:
        child: The sampler that solves each block (and whole problems that fit).
        max_block_vars: Largest block (> 1). ``None``: the child's
            ``properties["max_num_variables"]`` (``"exact"``: 24; QPU backends: the largest
            clique that embeds).

    Run settings: the child's, plus ``initial_states``: starting spins ``(m, n)`` or ``(n,)``,
    exactly ±1 (default ``sign(-h)``, ``+1`` where ``h == 0``).

    Raises:
        ConfigError: ``max_block_vars`` is not an int > 1, or ``None`` and the child declares
            no size limit.

    Shape:
        ``sample_batch`` returns one read per problem: ``samples`` ``(m, 1, n)``, ``energies``
        ``(m, 1)``; a batch that fits goes to the child whole (all its reads).
    """

    def __init__(self, child: dimod.Sampler, max_block_vars: int | None = None) -> None:
        if max_block_vars is None:
            props = child.properties if isinstance(child.properties, Mapping) else {}
            max_block_vars = props.get("max_num_variables")
            if not isinstance(max_block_vars, numbers.Integral):
                raise ConfigError(
                    f"max_block_vars must be given: backend {backend_label(child)!r} declares no "
                    "properties['max_num_variables'] (got None)"
                )
        if positive_int("max_block_vars", max_block_vars) < 2:
            raise ConfigError(f"max_block_vars must be an int > 1 (got {max_block_vars!r})")
        self._child = child
        self.max_block_vars = int(max_block_vars)
        self.backend_name = backend_label(child)

    @property
    def children(self) -> list[dimod.Sampler]:
        return [self._child]

    @property
    def parameters(self) -> dict[str, list]:
        return {**{k: list(v) for k, v in self.child.parameters.items()}, "initial_states": []}

    @property
    def properties(self) -> dict[str, Any]:
        """The child's properties, ``max_block_vars``, and no size limit of its own."""
        props = dict(self.child.properties) if isinstance(self.child.properties, Mapping) else {}
        return {**props, "max_block_vars": self.max_block_vars, "max_num_variables": None}

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """One problem: through :meth:`sample_batch` (variables relabelled to ``0..n-1``)."""
        from qsgd.ising import from_bqm

        batch, labels = from_bqm(bqm)
        res = self.sample_batch(batch, **parameters)
        samples = res.samples[0]
        if bqm.vartype is dimod.BINARY:
            samples = ((samples + 1) // 2).astype(np.int8)
        info = {k: v for k, v in res.info.items() if k != "solved_by_counts"}
        return dimod.SampleSet.from_samples_bqm((samples, labels), bqm, info=info)

    def sample_batch(
        self, batch: IsingBatch, *, initial_states: Any = None, **parameters: Any
    ) -> BatchResult:
        """Solve ``batch`` whole when it fits, else by one sweep over contiguous blocks.

        Returns:
            ``info`` with ``block_vars`` (``None`` when the batch fit), ``blocks``,
            ``solved_by_counts`` (a block counts once per problem), ``wall_time`` (the blocks'
            solve time) and the QPU figures summed over blocks (``qpu_calls``,
            ``qpu_access_time``).
        """
        from qsgd.qubo import solve_blockwise
        from qsgd.samplers.registry import solve_batch

        if not isinstance(batch, IsingBatch):
            raise TypeError(f"batch must be an IsingBatch (got {type(batch).__name__})")
        if batch.num_variables <= self.max_block_vars:
            res = solve_batch(self.child, batch, **parameters)
            res.info["block_vars"] = None
            return res
        initial = np.where(batch.h <= 0, 1, -1) if initial_states is None else initial_states
        infos: list[dict[str, Any]] = []

        def solve(sub: IsingBatch) -> BatchResult:
            res = solve_batch(self.child, sub, **parameters)
            infos.append(res.info)
            return res

        spins, energies = solve_blockwise(batch, solve, self.max_block_vars, initial)
        return BatchResult(spins[:, None, :], energies[:, None], _block_info(infos, self))


def _block_info(infos: list[dict[str, Any]], comp: BlockwiseComposite) -> dict[str, Any]:
    """``info`` of a block-wise solve: counts and times summed over the block solves.

    ``qpu_problems`` counts a problem once per block solved on the QPU (so
    ``qpu_problems / qpu_calls`` is the mean problems per call, as the optimizer reports it),
    and ``chain_break_fraction`` is the mean over the blocks that report one.
    """
    counts: dict[str, int] = {}
    for info in infos:
        for name, k in info.get("solved_by_counts", {}).items():
            counts[name] = counts.get(name, 0) + int(k)
    calls = [int(i.get("qpu_calls") or 0) for i in infos]
    cbf = [
        float(i["chain_break_fraction"])
        for i in infos
        if isinstance(i.get("chain_break_fraction"), (int, float))
        and not isinstance(i.get("chain_break_fraction"), bool)
    ]
    return {
        "backend": comp.backend_name,
        "solved_by_counts": counts,
        "block_vars": comp.max_block_vars,
        "blocks": len(infos),
        "wall_time": float(sum(float(i.get("wall_time", 0.0)) for i in infos)),
        "qpu_calls": int(sum(calls)),
        "qpu_problems": int(
            sum(sum(i["solved_by_counts"].values()) for i, c in zip(infos, calls, strict=True) if c)
        ),
        "qpu_access_time": float(sum(float(i.get("qpu_access_time") or 0.0) for i in infos)),
        "chain_break_fraction": float(np.mean(cbf)) if cbf else None,
    }
