"""Kernel-target alignment, differentiable (torch) and validated.

``A(K, y) = ⟨K, yyᵀ⟩_F / (||K||_F ||yyᵀ||_F) = yᵀKy / (||K||_F ||y||²)`` measures how well a Gram
matrix matches the ideal kernel of binary labels ``y ∈ {-1, +1}``; the centred alignment of
Cortes et al. 2012 first centres both matrices with ``H = I - 11ᵀ/N``. PennyLane's
``qml.kernels.target_alignment`` computes the same uncentred quantity.

Example:
    >>> K = torch.eye(4, dtype=torch.float64); y = np.array([1, -1, 1, -1])
    >>> float(target_alignment(K, y))
    0.5
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["binary_labels", "target_alignment", "centered_alignment"]


def binary_labels(y: Any, name: str = "y") -> torch.Tensor:
    """Validate binary labels and return them as a ±1 float64 tensor.

    Labels already in ``{-1, +1}`` are kept; any other two distinct values are mapped to
    ``-1`` (smaller) and ``+1`` (larger). Alignment is invariant under swapping the classes.

    Shape:
        - y: ``(N,)``; output ``(N,)``

    Raises:
        ValueError: not 1-D, NaN, or more than two distinct values.
    """
    arr = y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D label vector (got shape {arr.shape})")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    classes = np.unique(arr)
    if len(classes) > 2:
        shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in classes[:5])
        raise ValueError(
            f"{name} must hold binary labels for alignment (got {len(classes)} distinct values: "
            f"{shown}{', ...' if len(classes) > 5 else ''})"
        )
    if set(classes.tolist()) <= {-1, 1}:
        return torch.as_tensor(arr.astype(np.float64))
    return torch.as_tensor(np.where(arr == classes[-1], 1.0, -1.0))


def _square(K: Any) -> torch.Tensor:
    K = torch.as_tensor(K) if torch.is_tensor(K) else torch.as_tensor(np.asarray(K, np.float64))
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be a square Gram matrix (got shape {tuple(K.shape)})")
    return K.to(torch.float64)


def target_alignment(K: Any, y: Any, *, rescale_classes: bool = False) -> torch.Tensor:
    """Kernel-target alignment ``yᵀKy / (||K||_F ||y||²)``, differentiable in ``K``.

    Args:
        K: Gram matrix (torch tensor keeps the graph; numpy is converted).
        y: binary labels (see :func:`binary_labels`).
        rescale_classes: weight each label by ``1 / (class count)`` as in PennyLane's
            ``target_alignment(rescale_class_labels=True)``, balancing uneven classes.

    Shape:
        - K: ``(N, N)``; y: ``(N,)``; output scalar

    Raises:
        ValueError: shapes disagree or labels are not binary.
    """
    K = _square(K)
    t = binary_labels(y)
    if t.shape[0] != K.shape[0]:
        raise ValueError(
            f"y must have one label per row of K (expected {K.shape[0]}, got {t.shape[0]})"
        )
    if rescale_classes:
        n_pos = (t > 0).sum().clamp_min(1)
        n_neg = (t < 0).sum().clamp_min(1)
        t = torch.where(t > 0, t / n_pos, t / n_neg)
    return (t @ K @ t) / (torch.linalg.norm(K) * (t @ t))


def centered_alignment(K: Any, y: Any) -> torch.Tensor:
    """Centred kernel-target alignment ``⟨HKH, Hyyᵀ H⟩_F / (||HKH||_F ||Hyyᵀ H||_F)``.

    With ``y_c = y - mean(y)`` this is ``y_cᵀ K y_c / (||HKH||_F ||y_c||²)``.

    Shape:
        - K: ``(N, N)``; y: ``(N,)``; output scalar

    Raises:
        ValueError: shapes disagree, labels not binary, or only one class present (undefined).
    """
    K = _square(K)
    t = binary_labels(y)
    if t.shape[0] != K.shape[0]:
        raise ValueError(
            f"y must have one label per row of K (expected {K.shape[0]}, got {t.shape[0]})"
        )
    yc = t - t.mean()
    if float(yc @ yc) == 0.0:
        raise ValueError("y must contain both classes for centred alignment (got a single class)")
    Kc = K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()
    return (yc @ K @ yc) / (torch.linalg.norm(Kc) * (yc @ yc))
