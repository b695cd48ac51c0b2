"""Each evaluator against its formula written out here, on small random PSD matrices."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
from scipy.linalg import sqrtm

from qkernels.evaluate import (
    cumulative_power,
    generalization_bound,
    geometric_difference,
    model_complexity,
    polarity,
    rbf_kernel,
    task_model_alignment,
)


def _psd(n, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, rank or n))
    k = a @ a.T
    return k / np.sqrt(np.outer(np.diag(k), np.diag(k)))  # unit diagonal, trace n


def _labels(n, seed=1):
    y = np.where(np.random.default_rng(seed).random(n) < 0.4, -1.0, 1.0)
    y[0], y[1] = 1.0, -1.0
    return y


@pytest.mark.parametrize("reg", [1e-3, 0.1, 1.0])
def test_geometric_difference_is_huangs_regularised_definition(reg):
    Kq, Kc = _psd(8, seed=0), _psd(8, rank=3, seed=1) + 1e-3 * np.eye(8)
    n = 8
    kq, kc = Kq * n / np.trace(Kq), Kc * n / np.trace(Kc)
    sq_q, sq_c = np.real(sqrtm(kq)), np.real(sqrtm(kc))
    inv2 = np.linalg.inv(kc + reg * np.eye(n)) @ np.linalg.inv(kc + reg * np.eye(n))
    expected = np.sqrt(np.linalg.norm(sq_q @ sq_c @ inv2 @ sq_c @ sq_q, 2))
    assert geometric_difference(Kq, Kc, reg=reg) == pytest.approx(expected, rel=1e-8)
    # not the (K_C + λI)^{-1} shortcut, which is a different quantity for λ > 0
    shortcut = np.sqrt(np.linalg.norm(sq_q @ np.linalg.inv(kc + reg * np.eye(n)) @ sq_q, 2))
    assert abs(shortcut - expected) > 1e-6 * expected


def test_geometric_difference_unregularised_and_identity():
    Kq, Kc = _psd(6, seed=2), _psd(6, seed=3)
    sq = np.real(sqrtm(Kq))
    expected = np.sqrt(np.linalg.norm(sq @ np.linalg.inv(Kc) @ sq, 2))
    assert geometric_difference(Kq, Kc) == pytest.approx(expected, rel=1e-7)
    assert geometric_difference(Kq, Kq) == pytest.approx(1.0, rel=1e-7)


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_polarity_formula_and_pennylane(rescale, normalize):
    K = _psd(7, seed=4)
    y = _labels(7)
    t = y.copy()
    if rescale:
        t = np.where(y > 0, y / (y > 0).sum(), y / (y < 0).sum())
    expected = sum(t[i] * t[j] * K[i, j] for i in range(7) for j in range(7))
    if normalize:
        expected /= np.sqrt((K**2).sum()) * np.sqrt((np.outer(t, t) ** 2).sum())
    assert polarity(K, y, rescale_classes=rescale, normalize=normalize) == pytest.approx(expected)
    # PennyLane's own polarity on the same Gram (kernel looked up by index)
    X = np.arange(7, dtype=float)[:, None]
    ref = qml.kernels.polarity(
        X,
        y,
        lambda a, b: K[int(a[0]), int(b[0])],
        assume_normalized_kernel=False,
        rescale_class_labels=rescale,
        normalize=normalize,
    )
    assert polarity(K, y, rescale_classes=rescale, normalize=normalize) == pytest.approx(ref)


@pytest.mark.parametrize("reg", [0.0, 0.05, 2.0])
def test_model_complexity_and_bound_formulas(reg):
    K = _psd(9, seed=5) + 0.01 * np.eye(9)
    y = _labels(9, seed=6)
    n = 9
    k = K * n / np.trace(K)
    if reg == 0:
        s = y @ np.linalg.inv(k) @ y
        train = 0.0
    else:
        a = np.linalg.inv(k + reg * np.eye(n)) @ y
        s = np.linalg.norm(np.real(sqrtm(k)) @ a) ** 2
        train = reg**2 * np.linalg.norm(a) ** 2 / n
        # the training error term is the ridge model's training MSE
        ridge_pred = k @ a
        assert train == pytest.approx(np.mean((y - ridge_pred) ** 2), rel=1e-8)
    assert model_complexity(K, y, reg) == pytest.approx(s, rel=1e-7)
    assert generalization_bound(K, y, reg) == pytest.approx(
        np.sqrt(train) + np.sqrt(s / n), rel=1e-7
    )


def test_model_complexity_orders_kernels_by_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = np.sign(X[:, 0] + 1e-9)
    smooth = rbf_kernel(X, gamma=0.5)
    label_kernel = 0.9 * np.outer(y, y) + 0.1 * np.eye(40)
    assert model_complexity(label_kernel, y, 1e-3) < model_complexity(smooth, y, 1e-3)


def test_cumulative_power_formula():
    K = _psd(6, seed=8)
    y = _labels(6, seed=9)
    w, v = np.linalg.eigh(K)
    order = np.argsort(-w)
    expected = [sum((v[:, order[i]] @ y) ** 2 for i in range(k + 1)) / (y @ y) for k in range(6)]
    np.testing.assert_allclose(cumulative_power(K, y), expected, rtol=1e-10)
    assert cumulative_power(K, y)[-1] == pytest.approx(1.0)
    assert task_model_alignment(K, y) == pytest.approx(np.mean(expected))
    # the target as the top eigenvector: all power at k = 1
    y2 = np.array([1.0, -1.0, 1.0, 1.0])
    assert task_model_alignment(np.outer(y2, y2) + 0.01 * np.eye(4), y2) == pytest.approx(
        1.0, abs=1e-3
    )


@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (polarity, (np.eye(3), [1, 0, 1]), r"y must hold labels in \{-1, \+1\}"),
        (model_complexity, (np.eye(3), [1, -1, 1], -1.0), r"reg must be a finite float >= 0"),
        (model_complexity, (np.eye(3), [1, -1]), r"y must be 3 finite targets"),
        (geometric_difference, (np.eye(3), np.eye(4)), r"same shape"),
        (cumulative_power, (np.eye(3), [0, 0, 0]), r"y must not be all zeros"),
    ],
)
def test_bad_input_messages(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)
