"""Annealer backends: one registry of named dimod samplers, composites around them, and the batched entry point.

Example:
    >>> from qsgd.samplers import compose, get_sampler, solve_batch
    >>> sampler = get_sampler("neal")          # or "exact", "tabu", "batched", "mock-dwave", ...
    >>> blocks = compose(get_sampler("exact"), [("blockwise", {"max_block_vars": 12})])
"""

from qsgd.samplers.base import BatchResult, Sampler
from qsgd.samplers.registry import (
    available_backends,
    available_composites,
    compose,
    get_sampler,
    register_backend,
    register_composite,
    solve_batch,
)

__all__ = [
    "BatchResult",
    "Sampler",
    "available_backends",
    "available_composites",
    "compose",
    "get_sampler",
    "register_backend",
    "register_composite",
    "solve_batch",
]
