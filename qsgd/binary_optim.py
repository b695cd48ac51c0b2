"""One base for "a binary rule for the binary weights, a standard optimizer for the rest".

Placeholder filled in below.
"""

from __future__ import annotations

import torch

__all__ = ["flip_ratio"]


def flip_ratio(before: torch.Tensor, after: torch.Tensor) -> float:
    """Fraction of entries whose sign differs between two snapshots of a weight.

    The sign is :func:`qsgd.binary.binary_sign`'s (``sign(0) = +1``): a snapshot may be the
    weight itself or its ``w >= 0`` mask. This is the one flip-ratio definition of the
    project: the fit loop's per-layer ``flip_ratio`` and the optimizers' step statistics.

    Shape:
        ``before`` and ``after``: the same shape (any).

    Example:
        >>> flip_ratio(torch.tensor([1.0, -2.0, 0.0, 3.0]), torch.tensor([1.0, 2.0, -1.0, 3.0]))
        0.5
    """
    if before.shape != after.shape:
        raise ValueError(
            f"after must have the shape of before {tuple(before.shape)} (got {tuple(after.shape)})"
        )
    if before.numel() == 0:
        return 0.0
    b = before if before.dtype == torch.bool else before >= 0
    a = after if after.dtype == torch.bool else after >= 0
    return float((b != a).float().mean())
