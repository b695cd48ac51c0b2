"""What a batched solve returns, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BatchResult"]


@dataclass
class BatchResult:
    """Samples of ``m`` Ising problems solved in one batched call.

    Attributes:
        samples: ±1 spins, ``int8``, shape ``(m, reads, n)``; reads of each problem sorted by energy.
        energies: Ising energies of ``samples`` recomputed from the problem, shape ``(m, reads)``.
        info: Backend, wall time in seconds (``"wall_time"``), and backend-specific figures
            (e.g. ``"chain_break_fraction"`` for QPU backends).

    Shape:
        ``best`` is ``(m, n)`` and ``best_energy`` is ``(m,)``.
    """

    samples: np.ndarray
    energies: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> np.ndarray:
        """Lowest-energy sample of each problem, shape ``(m, n)``."""
        idx = np.argmin(self.energies, axis=1)
        return self.samples[np.arange(self.samples.shape[0]), idx]

    @property
    def best_energy(self) -> np.ndarray:
        """Lowest energy of each problem, shape ``(m,)``."""
        return self.energies.min(axis=1)
