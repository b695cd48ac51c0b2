"""Post-processing of estimated Gram matrices: PSD projection and noise mitigation.

Exact fidelity Gram matrices are PSD; finite-shot or noisy estimates need not be. These pure
functions repair them (Hubregtsen et al. 2021, Sec. IV).

Example:
    >>> K = np.array([[1.0, 1.2], [1.2, 1.0]])  # eigenvalues 2.2, -0.2
    >>> bool(np.linalg.eigvalsh(psd_project(K)).min() >= -1e-12)
    True
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["psd_project", "mitigate_depolarizing_noise", "apply_depolarizing_noise"]

PSD_METHODS = ("clip", "flip", "shift")
MITIGATION_METHODS = ("single", "average", "split_channel")


def _square(K: np.ndarray, name: str = "K") -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square matrix (got shape {K.shape})")
    if not np.isfinite(K).all():
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    return K


def psd_project(K: np.ndarray, method: Literal["clip", "flip", "shift"] = "clip") -> np.ndarray:
    """Make a symmetric matrix positive semidefinite.

    ``"clip"`` sets negative eigenvalues to zero (the closest PSD matrix in Frobenius norm),
    ``"flip"`` takes their absolute value, ``"shift"`` adds ``|λ_min|·I`` when ``λ_min < 0``.

    Shape:
        - K: ``(N, N)``; output ``(N, N)``
    """
    K = _square(K)
    if method not in PSD_METHODS:
        raise ValueError(f"method must be one of {PSD_METHODS} (got {method!r})")
    K = 0.5 * (K + K.T)
    w, v = np.linalg.eigh(K)
    if method == "shift":
        return K - min(w.min(), 0.0) * np.eye(K.shape[0])
    w = np.clip(w, 0.0, None) if method == "clip" else np.abs(w)
    return (v * w) @ v.T


def apply_depolarizing_noise(
    K: np.ndarray, n_wires: int, survival: np.ndarray | float
) -> np.ndarray:
    """Model of a noisy kernel estimate under global depolarising noise.

    With per-datapoint survival probabilities ``λ_i``, the measured entry is
    ``λ_i λ_j k_ij + (1 - λ_i λ_j) / 2**n`` (Hubregtsen et al. 2021). A scalar ``λ`` is the same
    for all points, giving ``λ² k_ij + (1 - λ²) / 2**n``.

    Shape:
        - K: ``(N, N)``; survival: scalar or ``(N,)``; output ``(N, N)``
    """
    K = _square(K)
    lam = np.broadcast_to(np.asarray(survival, dtype=np.float64), (K.shape[0],))
    ll = np.outer(lam, lam)
    return ll * K + (1.0 - ll) / 2**n_wires


def mitigate_depolarizing_noise(
    K: np.ndarray,
    n_wires: int,
    method: Literal["single", "average", "split_channel"] = "average",
) -> np.ndarray:
    """Undo global depolarising noise using the measured diagonal (which is 1 without noise).

    ``"single"`` estimates one survival ``λ²`` from ``K[0, 0]``, ``"average"`` from the mean of
    the diagonal, ``"split_channel"`` one ``λ_i`` per datapoint from ``K[i, i]``; then inverts
    :func:`apply_depolarizing_noise`. Only applies when the diagonal was measured, not assumed 1.

    Shape:
        - K: ``(N, N)``; output ``(N, N)``

    Raises:
        ValueError: unknown method, or a diagonal at or below the fully mixed value ``2**-n``.
    """
    K = _square(K)
    if method not in MITIGATION_METHODS:
        raise ValueError(f"method must be one of {MITIGATION_METHODS} (got {method!r})")
    d = 2.0**-n_wires
    diag = np.diagonal(K)
    if (diag <= d).any():
        raise ValueError(
            f"K's diagonal must exceed the fully mixed value 2**-n={d} (got min {diag.min()!r})"
        )
    if method == "single":
        ll = np.full_like(K, (diag[0] - d) / (1.0 - d))
    elif method == "average":
        ll = np.full_like(K, (diag.mean() - d) / (1.0 - d))
    else:
        lam = np.sqrt((diag - d) / (1.0 - d))
        ll = np.outer(lam, lam)
    return (K - (1.0 - ll) * d) / ll
