"""Annealer backends: one registry of named dimod samplers and the batched entry point.

Example:
    >>> from qsgd.samplers import get_sampler, solve_batch
    >>> sampler = get_sampler("neal")          # or "exact", "tabu", "batched", "mock-dwave", ...
"""

from qsgd.samplers.base import BatchResult, Sampler
from qsgd.samplers.registry import (
    available_backends,
    get_sampler,
    register_backend,
    solve_batch,
)

__all__ = ["BatchResult", "Sampler", "available_backends", "get_sampler", "register_backend", "solve_batch"]
