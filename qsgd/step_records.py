"""Per-layer records of a :class:`qsgd.optimizer.QPSBGD` step: the layer's job before its
solve, its solution, and the QPU figures summed over its solves (``last_stats`` entries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsgd.ising import IsingBatch
from qsgd.samplers.registry import solved_by_counts


class _QPUUse:
    """QPU figures of one layer update, summed over its solves (blocks count separately)."""

    def __init__(self) -> None:
        self.calls = 0
        self.problems = 0
        self.access = 0.0
        self.cbf_sum = 0.0
        self.cbf_problems = 0

    def add(self, info: Mapping[str, Any], num_problems: int) -> None:
        calls = int(info.get("qpu_calls") or 0)
        self.calls += calls
        if calls:
            self.problems += int(num_problems)
        self.access += float(info.get("qpu_access_time") or 0.0)
        cbf = info.get("chain_break_fraction")
        if isinstance(cbf, (int, float)) and not isinstance(cbf, bool) and math.isfinite(cbf):
            self.cbf_sum += float(cbf) * num_problems
            self.cbf_problems += int(num_problems)

    def record(self) -> dict[str, Any]:
        return {
            "qpu_calls": self.calls,
            "problems_per_call": self.problems / self.calls if self.calls else None,
            "qpu_access_time": self.access,
            "chain_break_fraction": self.cbf_sum / self.cbf_problems if self.cbf_problems else None,
        }


def _signs(positive: torch.Tensor) -> np.ndarray:
    """±1 (float32) from a boolean "sign is +1" tensor."""
    return np.where(positive.detach().cpu().numpy(), np.float32(1.0), np.float32(-1.0))


def _new_record(name: str, step: int, m: int, n: int, seed: int, backend: str) -> dict[str, Any]:
    """A layer's ``last_stats`` entry before its solve (every key present)."""
    return {
        "layer": name,
        "step": step,
        "problems": m,
        "variables": n,
        "rows": 0,
        "best_energy": float("nan"),
        "flip_ratio": 0.0,
        "num_weights": m * n,
        "num_flipped": 0,
        "wall_time": 0.0,
        "backend": backend,
        "solved_by": None,
        "solved_by_counts": {},
        "block_vars": None,
        "seed": seed,
        "skipped": False,
        "qpu_calls": 0,
        "problems_per_call": None,
        "qpu_access_time": 0.0,
        "chain_break_fraction": None,
    }


@dataclass
class _LayerJob:
    """One layer's problems and what its update needs (built before any layer is solved)."""

    index: int
    param: torch.Tensor
    old: torch.Tensor  # (fan_out, fan_in) view of the weight before the update
    old_pos: torch.Tensor  # old >= 0
    batch: IsingBatch
    record: dict[str, Any]
    lr: float
    formulation: str
    seed: int


@dataclass
class _Solved:
    """A layer's solution: best spins ``(m, n)``, their energies ``(m,)`` and the solve's figures."""

    spins: np.ndarray
    energies: np.ndarray
    wall: float
    counts: dict[str, int]
    qpu: dict[str, Any]
    block_vars: int | None = None


def _solved(result: Any, num_problems: int, default: str, *, shared: bool = False) -> _Solved:
    """A :class:`_Solved` from a ``BatchResult`` (reads sorted by energy: the first is the best).

    ``shared``: the result is one batch's share of a ``sample_batches`` call, whose
    ``problems_per_call`` describes the calls counted for this batch.
    """
    info = result.info
    counts = info.get("solved_by_counts")
    if not isinstance(counts, Mapping):
        counts = solved_by_counts(info, default=default, num_problems=num_problems)
    qpu = _QPUUse()
    qpu.add(info, num_problems)
    if shared and info.get("problems_per_call") is not None and qpu.calls:
        qpu.problems = float(info["problems_per_call"] or 0.0) * qpu.calls
    samples, energies = result.samples, result.energies
    if samples.shape[1] == 1:  # one read: nothing to choose
        best, best_e = samples[:, 0], energies[:, 0]
    else:
        best, best_e = result.best, result.best_energy
    return _Solved(best, best_e, float(info.get("wall_time", 0.0)), dict(counts), qpu.record())
