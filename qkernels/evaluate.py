"""Evaluators of kernels and kernel models: pure functions of Gram matrices, fidelities, labels.

* :func:`alignment`, :func:`centered_alignment`: kernel-target alignment (see
  :mod:`qkernels.alignment`), as floats.
* :func:`polarity`: ``Σ_ij y_i y_j K_ij`` (PennyLane's ``qml.kernels.polarity``); normalised, it is
  the target alignment.
* :func:`geometric_difference`: ``g(K_C || K_Q)`` of Huang et al. 2021, how much a quantum kernel
  can beat a classical one on some labelling (``g ≈ 1``: no room for advantage), with their
  regularised definition for ``reg > 0``.
* :func:`model_complexity`, :func:`generalization_bound`: Huang et al.'s ``s_K`` (the RKHS norm of
  the trained kernel ridge model) and the resulting bound on the prediction error.
* :func:`cumulative_power`, :func:`task_model_alignment`: how much of the target lies in the
  kernel's leading eigenvectors (the spectral bias of Canatar et al. 2021).
* :func:`spectrum`, :func:`effective_dimension`: eigenvalues of ``K/N`` and the participation
  ratio ``(Σλ)² / Σλ²``, which is ``N`` for the identity (no generalisation) and 1 for rank one.
* :func:`expressibility`: KL divergence of a fidelity histogram from the Haar distribution
  ``P(F) = (D-1)(1-F)^{D-2}`` (Sim et al. 2019); 0 means Haar-like.
* :func:`accuracy`, :func:`train_test_accuracy`.

Example:
    >>> round(effective_dimension(np.eye(5)), 9)
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
    "polarity",
    "model_complexity",
    "generalization_bound",
    "cumulative_power",
    "task_model_alignment",
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


def _trace_normalised(K: np.ndarray) -> np.ndarray:
    tr = np.trace(K)
    if not tr > 0:
        raise ValueError(f"a Gram matrix must have a positive trace (got {tr!r})")
    return K * K.shape[0] / tr


def _check_reg(reg: float) -> float:
    if not (isinstance(reg, int | float) and np.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite float >= 0 (got {reg!r})")
    return float(reg)


def geometric_difference(K_quantum: Any, K_classical: Any, reg: float = 0.0) -> float:
    """Geometric difference ``g(K_C || K_Q)`` of Huang et al. 2021 ("Power of data in QML").

    Both matrices are first normalised to trace ``N``. With ``reg = λ > 0`` this is their
    regularised definition

    ``g_λ = sqrt(|| sqrt(K_Q) sqrt(K_C) (K_C + λI)^{-2} sqrt(K_C) sqrt(K_Q) ||_2)``,

    the quantity that bounds the advantage of ``K_Q`` over a ridge model with ``K_C`` trained with
    that regulariser; at ``λ = 0`` it is ``sqrt(|| sqrt(K_Q) K_C^{-1} sqrt(K_Q) ||_2)`` (``K_C``
    pseudo-inverted when singular). ``g = 1`` when the kernels are equal; a large ``g`` means
    some labelling is learnable with ``K_Q`` but not with ``K_C``.

    Shape:
        - K_quantum, K_classical: ``(N, N)``
    """
    Kq, Kc = _sym(K_quantum, "K_quantum"), _sym(K_classical, "K_classical")
    if Kq.shape != Kc.shape:
        raise ValueError(
            f"K_quantum and K_classical must have the same shape (got {Kq.shape} and {Kc.shape})"
        )
    lam = _check_reg(reg)
    Kq, Kc = _trace_normalised(Kq), _trace_normalised(Kc)
    sq = _sqrtm_psd(Kq)
    w, v = np.linalg.eigh(Kc)
    w = np.clip(w, 0.0, None)
    if lam > 0:
        mid = w / (w + lam) ** 2  # sqrt(K_C) (K_C + λI)^{-2} sqrt(K_C) in K_C's eigenbasis
    else:
        mid = np.where(w > w.max() * 1e-12, 1.0 / np.where(w > 0, w, 1.0), 0.0)
    m = sq @ (v * mid) @ v.T @ sq
    return float(np.sqrt(np.linalg.norm(0.5 * (m + m.T), 2)))


def polarity(K: Any, y: Any, rescale_classes: bool = False, normalize: bool = False) -> float:
    """Kernel polarity ``Σ_ij y_i y_j K_ij`` of binary labels ``y`` in ``{-1, +1}``.

    As ``qml.kernels.polarity``: ``rescale_classes`` divides each label by the size of its
    class (balances unequal classes); ``normalize`` divides by ``||K||_F ||y y^T||_F``, which
    makes it the kernel-target alignment.

    Shape:
        - K: ``(N, N)``; y: ``(N,)``
    """
    K = _sym(K)
    t = _pm1_labels(y, K.shape[0])
    if rescale_classes:
        n_pos, n_neg = (t > 0).sum(), (t < 0).sum()
        t = np.where(t > 0, t / n_pos, t / n_neg)
    value = float(t @ K @ t)
    if normalize:
        value /= float(np.linalg.norm(K) * np.linalg.norm(np.outer(t, t)))
    return value


def _pm1_labels(y: Any, n: int) -> np.ndarray:
    t = np.asarray(y, dtype=np.float64).ravel()
    if t.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match K (got shape {t.shape})")
    if not np.isin(t, (-1.0, 1.0)).all():
        raise ValueError(f"y must hold labels in {{-1, +1}} (got values {np.unique(t)[:5]})")
    return t


def _targets(y: Any, n: int) -> np.ndarray:
    t = np.asarray(y, dtype=np.float64).ravel()
    if t.shape != (n,) or not np.isfinite(t).all():
        raise ValueError(f"y must be {n} finite targets to match K (got shape {t.shape})")
    return t


def model_complexity(K: Any, y: Any, reg: float = 0.0) -> float:
    """Model complexity ``s_K`` of Huang et al. 2021: the RKHS norm of the kernel ridge model.

    With ``K`` normalised to trace ``N`` and ``λ = reg``,
    ``s_{K,λ} = || sqrt(K) (K + λI)^{-1} y ||²``; at ``λ = 0`` it is ``y^T K^{-1} y``
    (pseudo-inverse when ``K`` is singular). Small ``s_K`` relative to ``N`` means the labels are
    easy to learn with this kernel: the prediction error is ``O(sqrt(s_K / N))``.

    Shape:
        - K: ``(N, N)``; y: ``(N,)`` labels or regression targets
    """
    K = _trace_normalised(_sym(K))
    t = _targets(y, K.shape[0])
    lam = _check_reg(reg)
    w, v = np.linalg.eigh(K)
    w = np.clip(w, 0.0, None)
    c = v.T @ t
    if lam > 0:
        return float((w / (w + lam) ** 2 * c**2).sum())
    keep = w > w.max() * 1e-12
    return float((c[keep] ** 2 / w[keep]).sum())


def generalization_bound(K: Any, y: Any, reg: float = 0.0) -> float:
    """Huang et al. 2021's bound on the prediction error of kernel ridge regression.

    ``sqrt(λ² ||(K + λI)^{-1} y||² / N) + sqrt(s_{K,λ} / N)``: the root of the training
    mean-squared error of the ridge model plus the complexity term (``K`` normalised to trace
    ``N``). Their theorem states it up to constant factors; here the constants are 1, so compare
    values between kernels on the same data rather than read them as error rates.

    Shape:
        - K: ``(N, N)``; y: ``(N,)``
    """
    Kn = _trace_normalised(_sym(K))
    t = _targets(y, Kn.shape[0])
    lam = _check_reg(reg)
    n = Kn.shape[0]
    train = 0.0
    if lam > 0:
        w, v = np.linalg.eigh(Kn)
        c = v.T @ t
        train = float(lam**2 * (c**2 / (np.clip(w, 0.0, None) + lam) ** 2).sum() / n)
    return float(np.sqrt(train) + np.sqrt(model_complexity(Kn, t, lam) / n))


def cumulative_power(K: Any, y: Any) -> np.ndarray:
    """Cumulative power ``C(k) = Σ_{i<=k} (v_i^T y)² / ||y||²`` of the target in ``K``'s eigenbasis.

    Eigenvectors ``v_i`` are sorted by decreasing eigenvalue. A kernel whose leading eigenvectors
    carry the target (``C`` rising fast) has a spectral bias that suits the task (Canatar et al.
    2021, "Spectral bias and task-model alignment"). ``C(N) = 1``.

    Shape:
        - K: ``(N, N)``; y: ``(N,)``; output ``(N,)``
    """
    K = _sym(K)
    t = _targets(y, K.shape[0])
    norm = float(t @ t)
    if norm == 0:
        raise ValueError("y must not be all zeros")
    w, v = np.linalg.eigh(K)
    order = np.argsort(w)[::-1]
    return np.cumsum((v[:, order].T @ t) ** 2) / norm


def task_model_alignment(K: Any, y: Any) -> float:
    """Area under :func:`cumulative_power`, ``mean_k C(k)``, in ``(0, 1]``.

    1 when the whole target lies in the leading eigenvector; about 1/2 when the target's power
    is spread evenly over the spectrum.
    """
    return float(cumulative_power(K, y).mean())


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
