"""Gradient training of embedding kernels by kernel-target alignment.

Each step draws a class-balanced random subset of the training set (seeded), computes its Gram
matrix with :meth:`EmbeddingKernel.gram` and takes an optimiser step on ``-alignment``.

Example:
    >>> from qkernels.ansatz import get_ansatz
    >>> from qkernels.datasets import load_dataset
    >>> ds = load_dataset("checkerboard", n_train=24, n_test=8, seed=0)
    >>> kern = EmbeddingKernel(get_ansatz("hubregtsen", 3, 2, n_features=2), seed=0)
    >>> record = train_alignment(kern, ds.X_train, ds.y_train, steps=5, batch_size=8, seed=0)
    >>> len(record.alignment), record.full_alignment[-1][0]
    (5, 5)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from qkernels.alignment import binary_labels, centered_alignment, target_alignment
from qkernels.device import DEVICES
from qkernels.kernel import EmbeddingKernel, as_input
from qsgd.errors import ConfigError, UnknownBackendError

__all__ = ["OPTIMIZERS", "TrainingRecord", "train_alignment"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
"""Optimiser names accepted by :func:`train_alignment`."""


@dataclass
class TrainingRecord:
    """Evidence of one training run.

    Attributes:
        alignment: batch alignment before each step, one per step.
        full_alignment: ``(step, alignment on the full training set)`` every ``eval_every`` steps
            and after the last step.
        step_seconds: wall time of each step.
        seed: the seed of the subset sampler.
        params: final trainable parameters (list form), bandwidth: final bandwidth.
    """

    alignment: list[float] = field(default_factory=list)
    full_alignment: list[tuple[int, float]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    seed: int | None = None
    params: list[Any] = field(default_factory=list)
    bandwidth: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def _balanced_batch(
    pos: np.ndarray, neg: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    half = size // 2
    n_pos = min(len(pos), size - half)
    n_neg = min(len(neg), size - n_pos)
    idx = np.concatenate(
        [rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)]
    )
    return np.sort(idx)


def train_alignment(
    kernel: EmbeddingKernel,
    X: Any,
    y: Any,
    *,
    steps: int = 100,
    batch_size: int = 8,
    lr: float = 0.05,
    centered: bool = False,
    optimizer: str = "adam",
    seed: int | None = 0,
    eval_every: int = 0,
) -> TrainingRecord:
    """Maximise (centred) kernel-target alignment of ``kernel`` on ``(X, y)`` in place.

    Args:
        kernel: the kernel whose trainable parameters (and bandwidth, if trainable) are updated.
        X: training inputs, ``(N, n_features)``.
        y: binary labels, ``(N,)``.
        steps: optimiser steps (0 only evaluates).
        batch_size: rows per step, drawn class-balanced without replacement (>= 2).
        lr: learning rate.
        centered: maximise centred alignment instead of plain alignment.
        optimizer: a name in ``OPTIMIZERS``.
        seed: seed of the subset sampler.
        eval_every: also record the full-set alignment before training and every this many
            steps (0: only at the end).

    Returns:
        A :class:`TrainingRecord`.

    Raises:
        ConfigError: bad step count, batch size or learning rate; UnknownBackendError: unknown
        optimiser; ValueError: labels not binary, bad inputs.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a non-negative int (got {steps!r})")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise ConfigError(f"batch_size must be an int >= 2 (got {batch_size!r})")
    if not (isinstance(lr, int | float) and lr > 0):
        raise ConfigError(f"lr must be a positive float (got {lr!r})")
    if optimizer not in OPTIMIZERS:
        raise UnknownBackendError(
            f"unknown optimizer {optimizer!r}; known optimizers: {', '.join(sorted(OPTIMIZERS))}"
        )
    if steps > 0 and DEVICES.get(getattr(kernel, "device_name", "default.qubit"), "") is None:
        raise ConfigError(
            f"device {kernel.device_name!r} computes Gram matrices forward only (no gradients), "
            "so it cannot train the kernel; build the kernel with device='default.qubit' to "
            f"train (got steps={steps})"
        )
    xt = as_input(X, kernel.ansatz, "X")
    t = binary_labels(y)
    if t.shape[0] != xt.shape[0]:
        raise ValueError(
            f"y must have one label per row of X (expected {xt.shape[0]}, got {t.shape[0]})"
        )
    score = centered_alignment if centered else target_alignment
    trainable = [p for p in kernel.parameters() if p.requires_grad and p.numel() > 0]
    record = TrainingRecord(seed=seed)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(t.numpy() > 0), np.flatnonzero(t.numpy() < 0)
    opt = OPTIMIZERS[optimizer](trainable, lr=lr) if trainable and steps > 0 else None
    if eval_every and opt is not None:  # the starting point of the full-set curve
        with torch.no_grad():
            record.full_alignment.append((0, float(score(kernel.gram(xt), t))))
    for step in range(steps if opt is not None else 0):
        t0 = time.perf_counter()
        idx = _balanced_batch(pos, neg, min(batch_size, len(t)), rng)
        opt.zero_grad()
        a = score(kernel.gram(xt[idx]), t[idx])
        (-a).backward()
        opt.step()
        record.alignment.append(float(a.detach()))
        record.step_seconds.append(time.perf_counter() - t0)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            with torch.no_grad():
                record.full_alignment.append((step + 1, float(score(kernel.gram(xt), t))))
    with torch.no_grad():
        record.full_alignment.append((len(record.alignment), float(score(kernel.gram(xt), t))))
    record.params = kernel.params.detach().numpy().tolist()
    record.bandwidth = float(kernel.bandwidth.detach())
    return record
