"""Evaluators of kernels and kernel models: pure functions of Gram matrices, fidelities, labels.

* :func:`alignment`, :func:`centered_alignment`: kernel-target alignment (see
  :mod:`qkernels.alignment`), as floats.
* :func:`geometric_difference`: ``g(K_C || K_Q)`` of Huang et al. 2021, how much a quantum kernel
  can beat a classical one on some labelling (``g ≈ 1``: no room for advantage).
* :func:`spectrum`, :func:`effective_dimension`: eigenvalues of ``K/N`` and the participation
  ratio ``(Σλ)² / Σλ²``, which is ``N`` for the identity (no generalisation) and 1 for rank one.
* :func:`expressibility`: KL divergence of a fidelity histogram from the Haar distribution
  ``P(F) = (D-1)(1-F)^{D-2}`` (Sim et al. 2019); 0 means Haar-like.
* :func:`accuracy`, :func:`train_test_accuracy`.

Example:
    >>> effective_dimension(np.eye(5))
    5.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qkernels.alignment import centered_alignment as _centered_alignment
from qkernels.alignment import target_alignment as _target_alignment

__all__ = [
    "alignment",
    "centered_alignment",
    "rbf_kernel",
    "geometric_difference",
    "spectrum",
    "effective_dimension",
    "haar_fidelity_bins",
    "expressibility",
    "fidelity_samples",
    "accuracy",
    "train_test_accuracy",
]


def _sym(K: Any, name: str = "K") -> np.ndarray:
    K = K.detach().numpy() if torch.is_tensor(K) else np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square Gram matrix (got shape {K.shape})")
    if not np.isfinite(K).all():
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    return 0.5 * (K + K.T)


def alignment(K: Any, y: Any, rescale_classes: bool = False) -> float:
    """Kernel-target alignment ``yᵀKy / (||K||_F ||y||²)`` of binary labels ``y``.

    Shape:
        - K: ``(N, N)``; y: ``(N,)``
    """
    return float(_target_alignment(K, y, rescale_classes=rescale_classes).detach())


def centered_alignment(K: Any, y: Any) -> float:
    """Centred kernel-target alignment (Cortes et al. 2012).

    Shape:
        - K: ``(N, N)``; y: ``(N,)``
    """
    return float(_centered_alignment(K, y).detach())


def rbf_kernel(X: Any, Y: Any = None, gamma: float | str = "scale") -> np.ndarray:
    """Gaussian kernel ``exp(-γ ||x - x'||²)``; ``"scale"`` uses ``γ = 1 / (d · Var(X))``.

    Shape:
        - X: ``(N, d)``; Y: ``(M, d)``; output ``(N, M)``
    """
    X = np.asarray(X, dtype=np.float64)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64)
    if gamma == "scale":
        var = X.var()
        gamma = 1.0 / (X.shape[1] * var) if var > 0 else 1.0
    if not (isinstance(gamma, int | float) and gamma > 0):
        raise ValueError(f"gamma must be a positive float or 'scale' (got {gamma!r})")
    sq = (X**2).sum(1)[:, None] + (Y**2).sum(1)[None, :] - 2 * X @ Y.T
    return np.exp(-gamma * np.clip(sq, 0.0, None))


def _sqrtm_psd(K: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(K)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def geometric_difference(K_quantum: Any, K_classical: Any, reg: float = 0.0) -> float:
    """Geometric difference ``g = sqrt(|| sqrt(K_Q) (K_C + reg·I)^{-1} sqrt(K_Q) ||_2)``.

    Both matrices are first normalised to trace ``N`` (Huang et al. 2021, "Power of data in
    quantum machine learning"). ``g = 1`` when they are equal; a large ``g`` means some labelling
    is learnable with ``K_Q`` but not with ``K_C``. ``reg > 0`` regularises a singular ``K_C``.

    Shape:
        - K_quantum, K_classical: ``(N, N)``
    """
    Kq, Kc = _sym(K_quantum, "K_quantum"), _sym(K_classical, "K_classical")
    if Kq.shape != Kc.shape:
        raise ValueError(
            f"K_quantum and K_classical must have the same shape (got {Kq.shape} and {Kc.shape})"
        )
    if reg < 0:
        raise ValueError(f"reg must be >= 0 (got {reg!r})")
    n = Kq.shape[0]
    Kq = Kq * n / np.trace(Kq)
    Kc = Kc * n / np.trace(Kc)
    sq = _sqrtm_psd(Kq)
    m = sq @ np.linalg.solve(Kc + reg * np.eye(n), sq)
    return float(np.sqrt(np.linalg.norm(0.5 * (m + m.T), 2)))


def spectrum(K: Any) -> np.ndarray:
    """Eigenvalues of ``K / N`` in descending order (clipped at 0).

    Shape:
        - K: ``(N, N)``; output ``(N,)``
    """
    K = _sym(K)
    w = np.linalg.eigvalsh(K / K.shape[0])[::-1]
    return np.clip(w, 0.0, None)


def effective_dimension(K: Any) -> float:
    """Participation ratio ``(Σλ)² / Σλ²`` of the kernel spectrum, in ``[1, N]``."""
    w = spectrum(K)
    return float(w.sum() ** 2 / (w**2).sum())


def haar_fidelity_bins(n_qubits: int, bins: int = 75) -> np.ndarray:
    """Probability of each of ``bins`` equal fidelity bins on ``[0, 1]`` under Haar-random states.

    Integrates ``(D-1)(1-F)^{D-2}``: ``P([a, b]) = (1-a)^{D-1} - (1-b)^{D-1}`` with ``D = 2**n``.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    d = 2**n_qubits
    cdf_c = (1.0 - edges) ** (d - 1)
    return cdf_c[:-1] - cdf_c[1:]


def expressibility(fidelities: Any, n_qubits: int, bins: int = 75, eps: float = 1e-12) -> float:
    """KL divergence ``D_KL(P_emp || P_Haar)`` of a histogram of state fidelities (Sim et al. 2019).

    Args:
        fidelities: samples ``|⟨φ(x)|φ(x')⟩|²`` for random input pairs (or parameter pairs).
        n_qubits: register size, fixes the Haar distribution.
        bins: histogram bins on ``[0, 1]``.
        eps: floor on Haar bin probabilities (far tail bins underflow for many qubits).

    Shape:
        - fidelities: ``(M,)``
    """
    f = np.asarray(fidelities, dtype=np.float64).ravel()
    if f.size == 0 or not np.isfinite(f).all() or (f < -1e-9).any() or (f > 1 + 1e-9).any():
        raise ValueError("fidelities must be a non-empty array of values in [0, 1]")
    p, _ = np.histogram(np.clip(f, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    p = p / p.sum()
    q = np.maximum(haar_fidelity_bins(n_qubits, bins), eps)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum())


def fidelity_samples(
    kernel: Any, n_pairs: int, low: float = -1.0, high: float = 1.0, seed: int | None = 0
) -> np.ndarray:
    """Fidelities of ``n_pairs`` random input pairs drawn uniformly from ``[low, high]^d``.

    Shape:
        - output: ``(n_pairs,)``
    """
    rng = np.random.default_rng(seed)
    d = kernel.ansatz.n_features
    xa = rng.uniform(low, high, size=(n_pairs, d))
    xb = rng.uniform(low, high, size=(n_pairs, d))
    with torch.no_grad():
        sa, sb = kernel.states(xa), kernel.states(xb)
        return ((sa.conj() * sb).sum(1).abs() ** 2).numpy()


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of equal labels."""
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.shape != b.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape (got {a.shape} and {b.shape})"
        )
    return float((a == b).mean())


def train_test_accuracy(
    model: Any, X_train: Any, y_train: Any, X_test: Any, y_test: Any
) -> dict[str, float]:
    """Train and test accuracy of a fitted classifier: ``{"train": ..., "test": ...}``."""
    return {
        "train": accuracy(y_train, model.predict(X_train)),
        "test": accuracy(y_test, model.predict(X_test)),
    }
